/* minimal: a complete bnoracle kernel in plain C99 — the example of docs/kernel-abi.md (ABI
 * version 2).
 *
 * float32 batch normalization in all four modes, NCHW only, two-pass statistics (mean, then
 * Σ(x − μ)²) in float accumulators, running statistics under PyTorch's convention. Build it as a
 * plugin (from the repository root) and check it:
 *
 *   gcc -std=c99 -O2 -Wall -Wextra -shared -fPIC -I adapters/include \
 *       kernels/minimal_c/minimal.c -o libbnk_minimal.so -lm
 *   build/default/tools/bnoracle check --kernel ./libbnk_minimal.so
 */
#include "bnoracle/kernel_abi.h"

#include <math.h>
#include <stdio.h>

#if defined(__GNUC__)
#define EXPORT __attribute__((visibility("default")))
#else
#define EXPORT
#endif

/* The problem's NCHW tensor: extents and strides, in elements. */
typedef struct nchw {
  int64_t n, c, h, w;
  int64_t sn, sc, sh, sw;
  int64_t len; /* L = N·H·W, the elements of one channel */
} nchw;

static int say(char* message, size_t size, int status, const char* text) {
  if (message != NULL && size > 0) snprintf(message, size, "%s", text);
  return status;
}

/* The tensors, as float32 (the only data type this kernel declares). */
typedef struct tensors {
  const float *src, *diff_dst, *gamma, *beta;
  float *running_mean, *running_var, *save_mean, *save_stat;
  float *dst, *diff_src, *diff_gamma, *diff_beta;
  int64_t* num_batches_tracked;
} tensors;

static tensors float32(const bnk_buffers_v2* b) {
  tensors t;
  t.src = (const float*)b->src;
  t.diff_dst = (const float*)b->diff_dst;
  t.gamma = (const float*)b->gamma;
  t.beta = (const float*)b->beta;
  t.running_mean = (float*)b->running_mean;
  t.running_var = (float*)b->running_var;
  t.save_mean = (float*)b->save_mean;
  t.save_stat = (float*)b->save_stat;
  t.dst = (float*)b->dst;
  t.diff_src = (float*)b->diff_src;
  t.diff_gamma = (float*)b->diff_gamma;
  t.diff_beta = (float*)b->diff_beta;
  t.num_batches_tracked = b->num_batches_tracked;
  return t;
}

/* Reads the problem. Anything but float32 batch norm in NCHW is BNK_UNSUPPORTED: a skip, not a
 * failure. */
static int shape_of(const bnk_problem_v2* p, nchw* t, char* message, size_t size) {
  if (p->struct_size < sizeof(bnk_problem_v2)) {
    return say(message, size, BNK_FAILED, "bnk_problem_v2 is older than this kernel");
  }
  if (p->op.kind != BNK_OP_BATCH_NORM || p->op.weight_offset || !p->op.centred ||
      p->types.data != BNK_DTYPE_F32 || p->types.parameters != BNK_DTYPE_F32 ||
      p->types.statistics != BNK_DTYPE_F32) {
    return say(message, size, BNK_UNSUPPORTED, "minimal is float32 batch norm only");
  }
  if (p->shape.layout != BNK_LAYOUT_NCHW || p->shape.rank != 4) {
    return say(message, size, BNK_UNSUPPORTED, "minimal supports NCHW only");
  }
  t->n = p->shape.dims[0];
  t->c = p->shape.dims[1];
  t->h = p->shape.dims[2];
  t->w = p->shape.dims[3];
  t->sn = p->shape.strides[0];
  t->sc = p->shape.strides[1];
  t->sh = p->shape.strides[2];
  t->sw = p->shape.strides[3];
  if (t->n < 0 || t->c < 0 || t->h < 0 || t->w < 0) {
    return say(message, size, BNK_FAILED, "negative extent");
  }
  t->len = t->n * t->h * t->w;
  return BNK_OK;
}

/* Memory offset of the j-th element (n-major, then h, then w) of channel c. */
static int64_t at(const nchw* t, int64_t c, int64_t j) {
  const int64_t w = j % t->w;
  const int64_t h = (j / t->w) % t->h;
  const int64_t n = j / (t->w * t->h);
  return n * t->sn + c * t->sc + h * t->sh + w * t->sw;
}

/* Two-pass statistics of channel c: mean, and M2 = Σ(x − mean)². */
static void stats(const nchw* t, const float* x, int64_t c, float* mean, float* m2) {
  float s = 0.0f;
  float d2 = 0.0f;
  int64_t j;
  for (j = 0; j < t->len; ++j) s += x[at(t, c, j)];
  *mean = s / (float)t->len;
  for (j = 0; j < t->len; ++j) {
    const float d = x[at(t, c, j)] - *mean;
    d2 += d * d;
  }
  *m2 = d2;
}

static float inv_std(float var, double eps) {
  return 1.0f / sqrtf(var + (float)eps);
}

static int forward_training(const bnk_problem_v2* p, const bnk_buffers_v2* raw, char* message,
                            size_t size) {
  nchw t;
  int64_t c, j;
  float f = 0.0f;
  const int track = p->track_running;
  const tensors tb = float32(raw);
  const tensors* b = &tb;
  const int affine = p->op.params == BNK_PARAMS_PER_CHANNEL;
  const int status = shape_of(p, &t, message, size);
  if (status != BNK_OK) return status;
  if (t.len == 1) {
    /* PyTorch raises here; a conforming kernel refuses. */
    return say(message, size, BNK_REFUSED,
               "pytorch: expected more than 1 value per channel when training");
  }
  if (track) {
    ++*b->num_batches_tracked;
    /* The weight of the new batch statistic: momentum, or 1/t for momentum = None. */
    f = p->cumulative ? 1.0f / (float)*b->num_batches_tracked : (float)p->momentum;
  }
  for (c = 0; c < t.c; ++c) {
    float mean, m2, rstd, gamma, beta;
    if (t.len == 0) { /* empty batch: no statistics (0/0); running statistics unchanged */
      mean = rstd = NAN;
    } else {
      stats(&t, b->src, c, &mean, &m2);
      rstd = inv_std(m2 / (float)t.len, p->eps);
    }
    if (b->save_mean != NULL) b->save_mean[c] = mean;
    if (b->save_stat != NULL) b->save_stat[c] = rstd;
    if (t.len == 0) continue;
    gamma = affine ? b->gamma[c] : 1.0f;
    beta = affine ? b->beta[c] : 0.0f;
    for (j = 0; j < t.len; ++j) {
      const int64_t o = at(&t, c, j);
      b->dst[o] = (b->src[o] - mean) * (gamma * rstd) + beta;
    }
    if (track) { /* (1 − f)·old + f·new; the running variance is unbiased: M2/(L − 1) */
      b->running_mean[c] = (1.0f - f) * b->running_mean[c] + f * mean;
      b->running_var[c] = (1.0f - f) * b->running_var[c] + f * (m2 / (float)(t.len - 1));
    }
  }
  return BNK_OK;
}

static int forward_inference(const bnk_problem_v2* p, const bnk_buffers_v2* raw, char* message,
                             size_t size) {
  nchw t;
  int64_t c, j;
  const tensors tb = float32(raw);
  const tensors* b = &tb;
  const int affine = p->op.params == BNK_PARAMS_PER_CHANNEL;
  const int status = shape_of(p, &t, message, size);
  if (status != BNK_OK) return status;
  for (c = 0; c < t.c && t.len > 0; ++c) {
    const float scale = (affine ? b->gamma[c] : 1.0f) * inv_std(b->running_var[c], p->eps);
    const float beta = affine ? b->beta[c] : 0.0f;
    for (j = 0; j < t.len; ++j) {
      const int64_t o = at(&t, c, j);
      b->dst[o] = (b->src[o] - b->running_mean[c]) * scale + beta;
    }
  }
  return BNK_OK;
}

static int backward_training(const bnk_problem_v2* p, const bnk_buffers_v2* raw, char* message,
                             size_t size) {
  nchw t;
  int64_t c, j;
  const tensors tb = float32(raw);
  const tensors* b = &tb;
  const int affine = p->op.params == BNK_PARAMS_PER_CHANNEL;
  const int status = shape_of(p, &t, message, size);
  if (status != BNK_OK) return status;
  if (t.len == 1) {
    return say(message, size, BNK_REFUSED,
               "pytorch: expected more than 1 value per channel when training");
  }
  for (c = 0; c < t.c; ++c) {
    float mean, rstd, sum_dy = 0.0f, sum_dy_xc = 0.0f, dgamma, scale, mean_dy, mean_dy_xhat;
    if (t.len == 0) { /* empty sums */
      if (affine) b->diff_gamma[c] = b->diff_beta[c] = 0.0f;
      continue;
    }
    if (b->save_mean != NULL && b->save_stat != NULL) { /* what forward training saved */
      mean = b->save_mean[c];
      rstd = b->save_stat[c];
    } else {
      float m2;
      stats(&t, b->src, c, &mean, &m2);
      rstd = inv_std(m2 / (float)t.len, p->eps);
    }
    for (j = 0; j < t.len; ++j) {
      const int64_t o = at(&t, c, j);
      sum_dy += b->diff_dst[o];
      sum_dy_xc += b->diff_dst[o] * (b->src[o] - mean);
    }
    dgamma = sum_dy_xc * rstd; /* Σ dy·x̂ */
    if (affine) {
      b->diff_gamma[c] = dgamma;
      b->diff_beta[c] = sum_dy;
    }
    /* dx = γ·r·(dy − mean(dy) − x̂·mean(dy·x̂)) */
    scale = (affine ? b->gamma[c] : 1.0f) * rstd;
    mean_dy = sum_dy / (float)t.len;
    mean_dy_xhat = dgamma / (float)t.len;
    for (j = 0; j < t.len; ++j) {
      const int64_t o = at(&t, c, j);
      const float xhat = (b->src[o] - mean) * rstd;
      b->diff_src[o] = scale * ((b->diff_dst[o] - mean_dy) - xhat * mean_dy_xhat);
    }
  }
  return BNK_OK;
}

static int backward_inference(const bnk_problem_v2* p, const bnk_buffers_v2* raw, char* message,
                              size_t size) {
  nchw t;
  int64_t c, j;
  const tensors tb = float32(raw);
  const tensors* b = &tb;
  const int affine = p->op.params == BNK_PARAMS_PER_CHANNEL;
  const int status = shape_of(p, &t, message, size);
  if (status != BNK_OK) return status;
  for (c = 0; c < t.c; ++c) {
    const float rstd = inv_std(b->running_var[c], p->eps);
    const float scale = (affine ? b->gamma[c] : 1.0f) * rstd;
    float sum_dy = 0.0f, sum_dy_xc = 0.0f;
    for (j = 0; j < t.len; ++j) {
      const int64_t o = at(&t, c, j);
      b->diff_src[o] = scale * b->diff_dst[o];
      sum_dy += b->diff_dst[o];
      sum_dy_xc += b->diff_dst[o] * (b->src[o] - b->running_mean[c]);
    }
    if (affine) {
      b->diff_gamma[c] = sum_dy_xc * rstd;
      b->diff_beta[c] = sum_dy;
    }
  }
  return BNK_OK;
}

static const bnk_kernel_v2 table = {
    BNK_ABI_VERSION_2,
    (uint32_t)sizeof(bnk_kernel_v2),
    "minimal", /* name */
    "1.0",     /* version */
    "pytorch", /* convention of the running statistics */
    BNK_OP_BIT(BNK_OP_BATCH_NORM),   /* ops */
    BNK_LAYOUT_NCHW,                 /* layouts */
    BNK_DTYPE_BIT(BNK_DTYPE_F32),    /* data types of the data */
    BNK_DTYPE_BIT(BNK_DTYPE_F32),    /* ... of the parameters */
    BNK_DTYPE_BIT(BNK_DTYPE_F32),    /* ... of the statistics */
    1, /* updates_running */
    1, /* supports_cumulative */
    BNK_SAVES_MEAN_INVSTD,
    forward_training,
    forward_inference,
    backward_training,
    backward_inference,
    NULL, /* syncbn_merge: not provided */
    NULL, /* fold: not provided */
};

EXPORT const bnk_kernel_v2* bnoracle_kernel_v2(void) { /* the entry symbol (BNK_ENTRY_SYMBOL_V2) */
  return &table;
}
