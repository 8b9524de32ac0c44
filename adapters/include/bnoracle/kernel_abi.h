/* bnoracle kernel ABI, version 1.
 *
 * A float32 batch-normalization kernel plugs into bnoracle as a shared library that exports one
 * C function, `bnoracle_kernel_v1`, returning a table that describes the kernel and points at
 * its entry points. Plain C99: any language with a C FFI can implement it. docs/kernel-abi.md
 * documents every field and gives a complete minimal kernel.
 *
 * Conventions of this header:
 * - Tensors travel as a pointer plus the shared shape descriptor `bnk_shape` (logical dims
 *   N, C, spatial... and a stride per logical dim, in elements; strides may be negative or 0).
 *   src, dst, diff_dst and diff_src all have the problem's shape.
 * - Per-channel vectors (gamma, beta, running statistics, saved statistics, diff_gamma,
 *   diff_beta) are dense arrays of C floats.
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
  const int64_t* count;     /* K: elements per channel on shard k (0 allowed: it contributes
                               nothing; its mean and variance are then 0) */
  const float* shard_mean;  /* K·C, shard-major: shard_mean[k·C + c] */
  const float* shard_var;   /* K·C, biased variance of shard k, channel c */
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
 *   weight_out[o·K + k] = weight[o·K + k]·s[o],   bias_out[o] = (bias[o] − running_mean[o])·s[o] + beta[o]
 * where bias is 0 when the layer has none. */
typedef struct bnk_fold_problem {
  uint32_t struct_size;  /* sizeof(bnk_fold_problem) as bnoracle was built */
  int64_t out_channels;  /* O: output channels of the layer = channels of the batch norm */
  int64_t fan_in;        /* K: weights per output channel (in_channels·kernel extent) */
  double eps;
  int32_t has_bias;      /* 1: `bias` is given; 0: the layer has no bias (it is NULL) */
} bnk_fold_problem;

typedef struct bnk_fold_buffers {
  /* Inputs. */
  const float* weight; /* O·K, row-major per output channel */
  const float* bias;   /* O, or NULL when !has_bias */
  const float* gamma;  /* O */
  const float* beta;   /* O */
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

#ifdef __cplusplus
}
#endif

#endif /* BNORACLE_KERNEL_ABI_H */
