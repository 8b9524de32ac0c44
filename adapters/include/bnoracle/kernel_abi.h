/* bnoracle kernel ABI, versions 1 and 2.
 *
 * A kernel plugs into bnoracle as a shared library that exports one C function returning a
 * table that describes the kernel and points at its entry points: `bnoracle_kernel_v2` (any
 * member of the normalization family, in float32, float16 or bfloat16; at the end of this file)
 * or `bnoracle_kernel_v1` (float32 batch norm, judged as it always was). Plain C99: any language
 * with a C FFI can implement it. docs/kernel-abi.md documents every field and gives a complete
 * minimal kernel.
 *
 * Conventions of this header:
 * - Tensors travel as a pointer plus the shared shape descriptor `bnk_shape` (logical dims
 *   N, C, spatial... and a stride per logical dim, in elements; strides may be negative or 0).
 *   src, dst, diff_dst and diff_src all have the problem's shape.
 * - Version 1: per-channel vectors (gamma, beta, running statistics, saved statistics,
 *   diff_gamma, diff_beta) are dense arrays of C floats. Version 2: dense arrays of the extents
 *   bnk_problem_v2 gives, of their role's data type.
 * - An entry point returns a `bnk_status`; on anything but BNK_OK it may write a NUL-terminated
 *   message of at most `message_size` bytes (including the NUL) into `message`.
 * - A kernel must not write outside its outputs or modify its inputs; bnoracle checks both.
 */
#ifndef BNORACLE_KERNEL_ABI_H
#define BNORACLE_KERNEL_ABI_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define BNK_ABI_VERSION 1
#define BNK_ENTRY_SYMBOL "bnoracle_kernel_v1"

/* Return codes of every entry point. */
typedef enum bnk_status {
  BNK_OK = 0,
  BNK_UNSUPPORTED = 1, /* this problem is outside what the kernel supports: a skip, not a failure */
  BNK_REFUSED = 2,     /* the problem is invalid under the kernel's convention (e.g. PyTorch with
                          one value per channel in training): the kernel rejects it on purpose */
  BNK_FAILED = 3       /* anything else went wrong */
} bnk_status;

typedef enum bnk_mode {
  BNK_FORWARD_TRAINING = 0,
  BNK_FORWARD_INFERENCE = 1,
  BNK_BACKWARD_TRAINING = 2,
  BNK_BACKWARD_INFERENCE = 3
} bnk_mode;

/* Layouts, as bits of bnk_kernel.layouts (what the kernel supports) and as the single value of
 * bnk_shape.layout (what the strides of this problem are). BNK_LAYOUT_STRIDED means the strides
 * are none of the dense named layouts. */
enum {
  BNK_LAYOUT_NC = 1u << 0,
  BNK_LAYOUT_NCL = 1u << 1,
  BNK_LAYOUT_NCHW = 1u << 2,
  BNK_LAYOUT_NHWC = 1u << 3,
  BNK_LAYOUT_NCDHW = 1u << 4,
  BNK_LAYOUT_NDHWC = 1u << 5,
  BNK_LAYOUT_STRIDED = 1u << 6
};

/* What forward training saves for backward training. */
typedef enum bnk_saved {
  BNK_SAVES_NONE = 0,        /* backward recomputes the statistics from src */
  BNK_SAVES_MEAN_INVSTD = 1, /* save_mean = μ, save_stat = 1/sqrt(σ² + ε) (cuDNN, PyTorch) */
  BNK_SAVES_MEAN_VAR = 2     /* save_mean = μ, save_stat = σ² biased (TensorFlow CPU) */
} bnk_saved;

typedef struct bnk_shape {
  int32_t rank;       /* 2 + number of spatial dims: 2..5 */
  uint32_t layout;    /* one BNK_LAYOUT_* value */
  int64_t dims[5];    /* N, C, then spatial extents; unused entries 1 */
  int64_t strides[5]; /* per logical dim, in elements; unused entries 0 */
} bnk_shape;

typedef struct bnk_problem {
  uint32_t struct_size; /* sizeof(bnk_problem) as bnoracle was built: fields may be appended */
  bnk_shape shape;
  double eps;            /* inside the square root */
  double momentum;       /* in the sense of the kernel's claimed convention; unused if cumulative */
  int32_t cumulative;    /* 1: momentum = None, factor 1/num_batches_tracked (after increment) */
  int32_t affine;        /* 1: gamma and beta are given and diff_gamma/diff_beta are wanted */
  int32_t track_running; /* forward training: 1 = update running_mean, running_var and
                            num_batches_tracked in place */
} bnk_problem;

typedef struct bnk_buffers {
  /* Inputs. */
  const float* src;      /* every mode */
  const float* diff_dst; /* backward modes */
  const float* gamma;    /* C, when affine */
  const float* beta;     /* C, when affine */
  /* Running statistics: inputs in inference; updated in place by forward training when
   * track_running (and then num_batches_tracked too). */
  float* running_mean; /* C */
  float* running_var;  /* C */
  int64_t* num_batches_tracked;
  /* Saved statistics: outputs of forward training, inputs of backward training (the values the
   * same kernel's forward training produced; NULL when the kernel saves nothing). */
  float* save_mean; /* C */
  float* save_stat; /* C: invstd or biased variance, per bnk_kernel.saves */
  /* Outputs. */
  float* dst;        /* forward modes */
  float* diff_src;   /* backward modes */
  float* diff_gamma; /* C, backward modes when affine */
  float* diff_beta;  /* C, backward modes when affine */
} bnk_buffers;

typedef int (*bnk_entry)(const bnk_problem* problem, const bnk_buffers* buffers, char* message,
                         size_t message_size);

/* ---- Operations beside the four modes (appended to ABI version 1; see bnk_kernel) ---------- */

/* SyncBN: merging the per-shard statistics of one step into the global ones. K shards (devices)
 * each computed, for every channel, its element count, mean and biased variance in float32; the
 * kernel merges them (exactly as if one device had seen the whole batch), derives the invstd and,
 * with track_running, updates the running statistics under its claimed convention (the running
 * variance estimator of that convention over the total count n = Σ count). */
typedef struct bnk_syncbn_problem {
  uint32_t struct_size;  /* sizeof(bnk_syncbn_problem) as bnoracle was built */
  int64_t shards;        /* K >= 1 */
  int64_t channels;      /* C >= 0 */
  double eps;            /* inside the square root of invstd */
  double momentum;       /* as in bnk_problem; unused if cumulative */
  int32_t cumulative;    /* 1: momentum = None, factor 1/num_batches_tracked (after increment) */
  int32_t track_running; /* 1: update running_mean, running_var, num_batches_tracked in place */
} bnk_syncbn_problem;

typedef struct bnk_syncbn_buffers {
  /* Inputs. */
  const int64_t* count;    /* K: elements per channel on shard k (0 allowed: it contributes
                              nothing; its mean and variance are then 0) */
  const float* shard_mean; /* K·C, shard-major: shard_mean[k·C + c] */
  const float* shard_var;  /* K·C, biased variance of shard k, channel c */
  /* Running statistics (C each), updated in place when track_running. */
  float* running_mean;
  float* running_var;
  int64_t* num_batches_tracked;
  /* Outputs (C each). */
  float* mean;   /* global mean */
  float* var;    /* global biased variance */
  float* invstd; /* 1/sqrt(var + eps) */
} bnk_syncbn_buffers;

/* Folding an inference batch norm into the preceding linear or convolution layer: with
 * s = gamma/sqrt(running_var + eps) per output channel o,
 *   weight_out[o·K + k] = weight[o·K + k]·s[o],   bias_out[o] = (bias[o] − running_mean[o])·s[o] +
 * beta[o] where bias is 0 when the layer has none. */
typedef struct bnk_fold_problem {
  uint32_t struct_size; /* sizeof(bnk_fold_problem) as bnoracle was built */
  int64_t out_channels; /* O: output channels of the layer = channels of the batch norm */
  int64_t fan_in;       /* K: weights per output channel (in_channels·kernel extent) */
  double eps;
  int32_t has_bias; /* 1: `bias` is given; 0: the layer has no bias (it is NULL) */
} bnk_fold_problem;

typedef struct bnk_fold_buffers {
  /* Inputs. */
  const float* weight;       /* O·K, row-major per output channel */
  const float* bias;         /* O, or NULL when !has_bias */
  const float* gamma;        /* O */
  const float* beta;         /* O */
  const float* running_mean; /* O */
  const float* running_var;  /* O */
  /* Outputs. */
  float* weight_out; /* O·K */
  float* bias_out;   /* O (always written: a layer without bias gets one) */
} bnk_fold_buffers;

typedef int (*bnk_syncbn_entry)(const bnk_syncbn_problem* problem,
                                const bnk_syncbn_buffers* buffers, char* message,
                                size_t message_size);
typedef int (*bnk_fold_entry)(const bnk_fold_problem* problem, const bnk_fold_buffers* buffers,
                              char* message, size_t message_size);

typedef struct bnk_kernel {
  uint32_t abi_version;        /* BNK_ABI_VERSION */
  uint32_t struct_size;        /* sizeof(bnk_kernel) */
  const char* name;            /* e.g. "welford" */
  const char* version;         /* e.g. "1.0" */
  const char* convention;      /* running statistics convention claimed: "pytorch", "keras", ... */
  uint32_t layouts;            /* BNK_LAYOUT_* bits supported */
  int32_t updates_running;     /* 1: forward training can update running statistics */
  int32_t supports_cumulative; /* 1: momentum = None is supported */
  int32_t saves;               /* a bnk_saved value */
  /* Entry points; NULL means the mode is not supported. */
  bnk_entry forward_training;
  bnk_entry forward_inference;
  bnk_entry backward_training;
  bnk_entry backward_inference;
  /* Appended within version 1 (read only when struct_size covers them; NULL = not supported). */
  bnk_syncbn_entry syncbn_merge;
  bnk_fold_entry fold;
} bnk_kernel;

/* The size of the first version-1 table, without the appended fields: the smallest struct_size
 * bnoracle accepts. */
#define BNK_KERNEL_V1_BASE_SIZE (offsetof(bnk_kernel, syncbn_merge))

/* The one exported symbol. Returns a table valid for the library's lifetime. */
typedef const bnk_kernel* (*bnk_entry_fn)(void);

/* ==== ABI version 2: the normalization family in any data type ===============================
 *
 * A version-2 library exports `bnoracle_kernel_v2` instead (a library exporting both is loaded
 * as version 2). What version 2 adds to version 1:
 * - the problem says which normalization it is (bnk_op_desc: batch, layer, RMS, group or
 *   instance norm, with the reduced axes, the groups, whether the mean is subtracted, where γ/β
 *   live, the weight offset) and the data type of each role (bnk_types);
 * - tensors are untyped pointers (`void*`), each of its role's data type;
 * - the table says which ops and data types the kernel supports, as bitsets, next to the layouts.
 * The shape descriptor, the modes, the statuses, the saved-statistics conventions and the two
 * batch-norm operations (SyncBN merge, fold) are those of version 1. docs/kernel-abi.md
 * documents every field.
 */

#define BNK_ABI_VERSION_2 2
#define BNK_ENTRY_SYMBOL_V2 "bnoracle_kernel_v2"

/* The normalization (bnk_op_desc.kind) and, as BNK_OP_BIT(kind), the bits of bnk_kernel_v2.ops. */
typedef enum bnk_op {
  BNK_OP_BATCH_NORM = 0,   /* one statistic per channel over (N, spatial); γ/β per channel */
  BNK_OP_LAYER_NORM = 1,   /* one per row over the last k axes of (C, spatial...) */
  BNK_OP_RMS_NORM = 2,     /* as layer norm, the mean not subtracted */
  BNK_OP_GROUP_NORM = 3,   /* one per (n, group of C/G channels) over (channels, spatial) */
  BNK_OP_INSTANCE_NORM = 4 /* one per (n, c) over spatial */
} bnk_op;
#define BNK_OP_BIT(kind) (1u << (kind))

/* Data types (bnk_types) and, as BNK_DTYPE_BIT(type), the bits of bnk_kernel_v2's type sets.
 * float16 is IEEE 754 binary16; bfloat16 is the upper half of a float32. */
typedef enum bnk_dtype { BNK_DTYPE_F32 = 0, BNK_DTYPE_F16 = 1, BNK_DTYPE_BF16 = 2 } bnk_dtype;
#define BNK_DTYPE_BIT(type) (1u << (type))

/* Where γ and β live (bnk_op_desc.params). */
typedef enum bnk_params {
  BNK_PARAMS_NONE = 0,        /* no γ/β: gamma, beta, diff_gamma and diff_beta are NULL */
  BNK_PARAMS_PER_CHANNEL = 1, /* one per channel: C entries */
  BNK_PARAMS_PER_ELEMENT = 2  /* one per element of the normalized block (layer, RMS norm) */
} bnk_params;

typedef struct bnk_op_desc {
  int32_t kind;               /* a bnk_op value */
  int32_t normalized_axes;    /* layer, RMS norm: trailing axes of (C, spatial...) normalized
                                 together (1 = the last); 0 for the others */
  int64_t groups;             /* group norm: G, which divides C; 0 for the others */
  int32_t centred;            /* 1: the mean is subtracted (0 for RMS norm) */
  int32_t params;             /* a bnk_params value */
  int32_t weight_offset;      /* 1: γ is stored as w and applied as 1 + w */
  int32_t running_stats;      /* 1: the op keeps running statistics (batch norm; instance norm
                                 with tracking) */
  int32_t cast_before_weight; /* 1: x̂ is rounded to the data type, then multiplied by γ in the
                                 data type (Llama's RMSNorm); 0: the output is rounded once */
  int32_t reserved;           /* 0 */
} bnk_op_desc;

typedef struct bnk_types {
  int32_t data;       /* bnk_dtype of src, dst, diff_dst, diff_src */
  int32_t parameters; /* bnk_dtype of gamma, beta, diff_gamma, diff_beta */
  int32_t statistics; /* bnk_dtype of running and saved statistics */
} bnk_types;

typedef struct bnk_problem_v2 {
  uint32_t struct_size; /* sizeof(bnk_problem_v2) as bnoracle was built: fields may be appended */
  bnk_op_desc op;
  bnk_types types;
  bnk_shape shape;
  /* Derived from op and shape, given so that a kernel need not derive them: */
  int64_t statistic_groups; /* how many statistics each saved statistic has */
  int64_t group_size;       /* L: elements each statistic reduces over */
  int64_t parameters;       /* entries of gamma, beta, diff_gamma, diff_beta (0: none) */
  int64_t running_size;     /* entries of running_mean, running_var (C; 0 when the op has none) */
  double eps;               /* inside the square root */
  double momentum;          /* in the sense of the kernel's claimed convention; unused if
                               cumulative */
  int32_t cumulative;       /* 1: momentum = None, factor 1/num_batches_tracked */
  int32_t track_running;    /* forward training: 1 = update the running statistics in place */
} bnk_problem_v2;

/* The tensors of bnk_buffers, untyped: each is of its role's data type (bnk_types). Per-element
 * tensors have the problem's shape and strides; gamma, beta, diff_gamma and diff_beta have
 * `parameters` entries, running statistics `running_size`, saved statistics `statistic_groups`
 * (statistic group g of the reduction documented in docs/kernel-abi.md). */
typedef struct bnk_buffers_v2 {
  const void* src;
  const void* diff_dst;
  const void* gamma;
  const void* beta;
  void* running_mean;
  void* running_var;
  int64_t* num_batches_tracked;
  void* save_mean;
  void* save_stat;
  void* dst;
  void* diff_src;
  void* diff_gamma;
  void* diff_beta;
} bnk_buffers_v2;

typedef int (*bnk_entry_v2)(const bnk_problem_v2* problem, const bnk_buffers_v2* buffers,
                            char* message, size_t message_size);

typedef struct bnk_kernel_v2 {
  uint32_t abi_version; /* BNK_ABI_VERSION_2 */
  uint32_t struct_size; /* sizeof(bnk_kernel_v2) */
  const char* name;
  const char* version;
  const char* convention;   /* as in version 1 ("none": no running statistics) */
  uint32_t ops;             /* BNK_OP_BIT(kind) of every op supported */
  uint32_t layouts;         /* BNK_LAYOUT_* bits supported */
  uint32_t data_types;      /* BNK_DTYPE_BIT(type) of every data type of the data supported */
  uint32_t parameter_types; /* ... of the parameters */
  uint32_t statistic_types; /* ... of the statistics */
  int32_t updates_running;
  int32_t supports_cumulative;
  int32_t saves; /* a bnk_saved value */
  /* Entry points; NULL means the mode is not supported. */
  bnk_entry_v2 forward_training;
  bnk_entry_v2 forward_inference;
  bnk_entry_v2 backward_training;
  bnk_entry_v2 backward_inference;
  bnk_syncbn_entry syncbn_merge; /* as in version 1; NULL = not provided */
  bnk_fold_entry fold;
} bnk_kernel_v2;

typedef const bnk_kernel_v2* (*bnk_entry_fn_v2)(void);

/* Visibility of the entry symbol when a plugin is built with hidden visibility by default. */
#ifndef BNK_PLUGIN_EXPORT
#if defined(__GNUC__) || defined(__clang__)
#define BNK_PLUGIN_EXPORT __attribute__((visibility("default")))
#else
#define BNK_PLUGIN_EXPORT
#endif
#endif

/* The entry point every kernel library defines (declared here so that a plugin compiled with
 * -Wmissing-prototypes needs no declaration of its own). bnoracle looks it up by name. */
BNK_PLUGIN_EXPORT const bnk_kernel* bnoracle_kernel_v1(void);
BNK_PLUGIN_EXPORT const bnk_kernel_v2* bnoracle_kernel_v2(void);

#ifdef __cplusplus
}
#endif

#endif /* BNORACLE_KERNEL_ABI_H */
