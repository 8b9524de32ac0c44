#!/usr/bin/env python3
"""Layer, RMS, group and instance norm in float32 numpy, as numpy_bn.py does batch norm.

Tensors are in logical order (N, C, spatial...). Each op is a batch norm over other statistic
groups (docs/reference.md, "Layer, RMS, group and instance norm"): the tensor is reshaped into a
matrix with one row per statistic group, and every statistic is a reduction along the rows:

    layer norm, RMS norm   rows: the leading axes; a row: the last k axes of (C, spatial...)
    group norm (G groups)  rows: (n, group); a row: the C/G channels of the group, spatial...
    instance norm          rows: (n, c); a row: the spatial elements

Everything is computed in float32 with a two-pass variance, as numpy_bn.py does:

    mean = rows.mean(1)          var = ((rows - mean) ** 2).mean(1)     (biased)
    invstd = 1 / sqrt(var + eps)     xhat = (x - mean) * invstd     y = xhat * gamma + beta

RMS norm subtracts no mean: its statistic is the mean square, formed as sum(x * (x / L)), whose
terms and partial sums never exceed the mean square itself (sum(x * x) overflows float32 once
it passes 3.4e38, while the mean square may still be finite). Its gamma is applied as 1 + w
with the weight offset (Gemma). gamma and beta are per channel (group and instance norm) or per
element of the normalized block (layer and RMS norm). Backward training differentiates through
the statistics, with g = gamma * dy:

    dx = invstd * (g - mean(g) - xhat * mean(g * xhat))    (RMS norm: without mean(g))
    dgamma = sum(dy * xhat), dbeta = sum(dy), over every element that uses the entry

Instance norm may keep running statistics (PyTorch's track_running_stats): one step updates
channel c with the mean over the examples of the per-instance statistics, the variance
Bessel-corrected with the spatial size, under the conventions of numpy_bn.update_running, with
a momentum (no cumulative average) and num_batches_tracked left as it was (PyTorch); its
inference modes are batch norm's, per channel (numpy_bn.forward_inference, backward_inference).
Under the pytorch convention, training on one spatial element is refused, as F.instance_norm
refuses it. The other ops keep no running statistics and have no inference mode.

Run with the Debian numpy: /usr/bin/python3 (see README.md).
"""

import math
import warnings

import numpy as np

import numpy_bn as bn

F32 = np.float32
KINDS = ("layer_norm", "rms_norm", "group_norm", "instance_norm")


def normalized_axes(op, ndim):
    """k, the trailing axes layer and RMS norm normalize together (1 to ndim - 1)."""
    k = op["normalized_axes"]
    if not 1 <= k <= ndim - 1:
        raise ValueError("normalized_axes %d is outside 1..%d" % (k, ndim - 1))
    return k


def statistic_rows(x, op):
    """x as a (groups, L) matrix, one row per statistic group (a view: x is in logical order)."""
    n, c, s = x.shape[0], x.shape[1], math.prod(x.shape[2:])
    kind = op["kind"]
    if kind in ("layer_norm", "rms_norm"):
        k = normalized_axes(op, x.ndim)
        return x.reshape(math.prod(x.shape[:x.ndim - k]), math.prod(x.shape[x.ndim - k:]))
    if kind == "group_norm":
        g = op["groups"]
        if g < 1 or c % g != 0:
            raise ValueError("groups %d do not divide C = %d" % (g, c))
        return x.reshape(n * g, (c // g) * s)
    if kind == "instance_norm":
        return x.reshape(n * c, s)
    raise bn.Unsupported("op " + kind)


def expand(v, op, shape):
    """A gamma/beta vector broadcast to the logical shape: per channel (axis 1), or per element
    of the normalized block (the last k axes)."""
    v = np.asarray(v, dtype=F32)
    if op["params"] == "per_channel":
        return np.broadcast_to(v.reshape((1, -1) + (1,) * (len(shape) - 2)), shape)
    k = normalized_axes(op, len(shape))
    return np.broadcast_to(v.reshape(shape[len(shape) - k:]), shape)


def parameter_sum(t, op):
    """Sums an (N, C, spatial...) tensor per gamma/beta entry: over every axis but the channel
    axis, or over the leading axes for entries per normalized element."""
    if op["params"] == "per_channel":
        return t.sum(axis=bn.reduce_axes(t), dtype=F32).astype(F32)
    k = normalized_axes(op, t.ndim)
    return t.sum(axis=tuple(range(t.ndim - k)), dtype=F32).reshape(-1).astype(F32)


def effective_gamma(gamma, op):
    """gamma as applied: 1 + w under the weight offset (rounded once to float32)."""
    gamma = np.asarray(gamma, dtype=F32)
    return (F32(1) + gamma).astype(F32) if op["weight_offset"] else gamma


def check_training(x, op, convention):
    if convention not in bn.CONVENTIONS:
        raise bn.Unsupported("unknown convention " + convention)
    spatial = math.prod(x.shape[2:])
    if op["kind"] == "instance_norm" and convention == "pytorch" and spatial == 1 and x.size:
        # F.instance_norm raises ValueError in training (forward and backward).
        raise bn.Refused("pytorch: expected more than 1 spatial element when training")


def row_stats(rows, op, eps):
    """Per row: mean (0 without centring), var (the mean square without centring), invstd, and
    the centred rows (the rows themselves without centring). NaN for an empty row."""
    L = rows.shape[1]
    with warnings.catch_warnings():  # "Mean of empty slice" for L = 0: the result is NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        if op["centred"]:
            mean = rows.mean(axis=1, dtype=F32).astype(F32)
            d = rows - mean[:, None]
            var = (d * d).mean(axis=1, dtype=F32).astype(F32)
        else:
            mean = np.zeros(rows.shape[0], dtype=F32)
            d = rows
            var = (rows * (rows / F32(L))).sum(axis=1, dtype=F32).astype(F32)
    return mean, var, bn.invstd_of(var, eps), d


def forward_training(x, op, gamma, beta, eps, convention, momentum=None, running=None):
    """Training forward pass of a layer, RMS, group or instance norm. running: (mean, var,
    num_batches_tracked) for instance norm tracking running statistics, else None.

    Returns a dict of outputs: dst, mean, var, invstd (one per statistic group), and for
    tracked running statistics running_mean, running_var and num_batches_tracked.
    """
    check_training(x, op, convention)
    rows = statistic_rows(x, op)
    mean, var, invstd, d = row_stats(rows, op, eps)
    y = (d * invstd[:, None]).reshape(x.shape)
    if gamma is not None:
        y = y * expand(effective_gamma(gamma, op), op, x.shape) + expand(beta, op, x.shape)
    out = {"dst": y.astype(F32), "mean": mean, "var": var, "invstd": invstd}
    if running is not None:
        if op["kind"] != "instance_norm":
            raise bn.Unsupported(op["kind"] + " keeps no running statistics")
        n, c = x.shape[0], x.shape[1]
        with warnings.catch_warnings():  # the mean over no example (N = 0) is NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            batch_mean = mean.reshape(n, c).mean(axis=0, dtype=F32).astype(F32)
            batch_var = var.reshape(n, c).mean(axis=0, dtype=F32).astype(F32)
        old_mean, old_var, nbt = running
        if momentum is None:
            # F.instance_norm takes a number: there is no cumulative average.
            raise bn.Unsupported("instance norm has no cumulative average (momentum=None)")
        # L = 0 when no instance exists: the empty-batch rule of the convention.
        L = rows.shape[1] if n > 0 else 0
        rm, rv, nbt = bn.update_running(convention, momentum, L, old_mean, old_var, batch_mean,
                                        batch_var, nbt)
        # nn.InstanceNorm never advances num_batches_tracked: the counter is returned as given.
        out.update(running_mean=rm, running_var=rv, num_batches_tracked=running[2])
    return out


def backward_training(x, dy, op, gamma, eps, convention):
    """Gradients through the statistics of every group; dgamma and dbeta sum over every group
    that holds the entry (every row for layer and RMS norm, every example for the others)."""
    check_training(x, op, convention)
    rows = statistic_rows(x, op)
    _, _, invstd, d = row_stats(rows, op, eps)
    xhat = d * invstd[:, None]
    g = dy if gamma is None else dy * expand(effective_gamma(gamma, op), op, x.shape)
    g = g.reshape(rows.shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean_g = g.mean(axis=1, dtype=F32) if op["centred"] else F32(0)
        mean_gx = (g * xhat).mean(axis=1, dtype=F32)
    dx = invstd[:, None] * (g - np.reshape(mean_g, (-1, 1)) - xhat * mean_gx[:, None])
    out = {"diff_src": dx.reshape(x.shape).astype(F32)}
    if gamma is not None:
        out["diff_gamma"] = parameter_sum(dy * xhat.reshape(x.shape), op)
        out["diff_beta"] = parameter_sum(dy, op)
    return out


def forward_inference(x, op, gamma, beta, eps, running_mean, running_var):
    """Instance norm with running statistics: entry c normalizes every instance (n, c)."""
    require_running(op)
    return bn.forward_inference(x, effective_gamma(gamma, op) if gamma is not None else None,
                                beta, eps, running_mean, running_var)


def backward_inference(x, dy, op, gamma, eps, running_mean, running_var):
    """Instance norm with running statistics held constant: batch norm's backward inference."""
    require_running(op)
    return bn.backward_inference(x, dy, effective_gamma(gamma, op) if gamma is not None else None,
                                 eps, running_mean, running_var)


def require_running(op):
    if op["kind"] != "instance_norm" or not op["running_stats"]:
        raise bn.Unsupported(op["kind"] + " without running statistics has no inference mode")


if __name__ == "__main__":
    # A tiny demonstration: a layer norm over the last axis of a 2 x 3 x 4 tensor.
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 4)).astype(F32)
    ln = {"kind": "layer_norm", "normalized_axes": 1, "groups": 0, "centred": True,
          "params": "per_normalized_element", "weight_offset": False, "running_stats": False}
    r = forward_training(x, ln, np.ones(4, F32), np.zeros(4, F32), 1e-5, "pytorch")
    print("dst[0, 0]:", r["dst"][0, 0], "mean:", r["mean"])
    assert math.isclose(float(r["mean"][0]), float(x[0, 0].mean()), rel_tol=1e-6)
