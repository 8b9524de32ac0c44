#!/usr/bin/env python3
"""Batch, layer, RMS, group and instance norm on float16 arrays, written as a NumPy user writes
them: the arrays stay float16 and NumPy's own operations do the arithmetic. It is the float16
counterpart of numpy_bn.py and numpy_norms.py (the same formulas, statistic groups and
conventions), kept to show what computing in the data's type costs:

    mean = rows.mean(1)            NumPy accumulates a float16 mean in float32, rounds it once
    var = rows.var(1)              float16 throughout: x - mean, its square (which overflows
                                   once |x - mean| > 255.9) and a float16 pairwise sum
    ms = (rows * rows).mean(1)     RMS norm: float16 squares (overflow once |x| > 255.9)
    invstd = 1 / np.sqrt(var + eps)      eps rounded to float16 (1e-5 is a float16 subnormal)
    y = (x - mean) * invstd * gamma + beta     each operation rounded to float16
    dgamma = (dy * xhat).sum(), dbeta = dy.sum()   float16 pairwise sums

numpy_kernel.py serves it with `--compute float16` in the all-float16 configuration (all_half);
docs/real-kernels.md says what bnoracle finds. The correct way to hold float16 data, computing in
float32 and rounding each output once, is numpy_kernel.py's default.

Run with the Debian numpy: /usr/bin/python3 (see README.md).
"""

import math
import warnings

import numpy as np

import numpy_bn as bn
import numpy_norms as norms

H = np.float16


def rows_of(x, op):
    """x as a (groups, L) matrix, one row per statistic group (batch norm: one per channel)."""
    if op["kind"] == "batch_norm":
        return np.moveaxis(x, 1, 0).reshape(x.shape[1], -1)
    return norms.statistic_rows(x, op)


def from_rows(rows, x, op):
    """The inverse of rows_of."""
    if op["kind"] == "batch_norm":
        shape = (x.shape[1], x.shape[0]) + x.shape[2:]
        return np.moveaxis(rows.reshape(shape), 0, 1)
    return rows.reshape(x.shape)


def row_stats(rows, op, eps):
    """mean (0 without centring), var (the mean square without centring), invstd and the
    centred rows, in float16 as NumPy computes them on float16 arrays."""
    with warnings.catch_warnings():  # an empty row's statistics are NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        if op["centred"]:
            mean = rows.mean(axis=1)
            var = rows.var(axis=1)
            d = rows - mean[:, None]
        else:
            mean = np.zeros(rows.shape[0], dtype=H)
            var = (rows * rows).mean(axis=1)
            d = rows
        invstd = H(1) / np.sqrt(var + H(eps))
    return mean, var, invstd, d


def broadcast(v, op, x):
    """A gamma/beta vector broadcast against x: per channel, or per normalized element."""
    if op["kind"] == "batch_norm":
        return v.reshape((1, -1) + (1,) * (x.ndim - 2))
    return norms.expand(v, op, x.shape).astype(H)  # expand widens; float16 -> float32 is exact


def gamma_of(gamma, op, x):
    """gamma as applied (1 + w in float16 under the weight offset), broadcast, or None."""
    if gamma is None:
        return None
    return broadcast((H(1) + gamma) if op.get("weight_offset") else gamma, op, x)


def parameter_sum(t, op):
    """A float16 sum per gamma/beta entry (NumPy sums float16 in float16)."""
    if op["kind"] == "batch_norm" or op["params"] == "per_channel":
        return t.sum(axis=bn.reduce_axes(t))
    k = norms.normalized_axes(op, t.ndim)
    return t.sum(axis=tuple(range(t.ndim - k))).reshape(-1)


def check_training(x, op, convention):
    if op["kind"] == "batch_norm":
        bn.check_training(convention, bn.elements_per_channel(x))
    else:
        norms.check_training(x, op, convention)


def forward_training(x, op, gamma, beta, eps, convention, momentum=None, running=None):
    """Training forward pass; running: (mean, var, num_batches_tracked) of a batch norm."""
    check_training(x, op, convention)
    rows = rows_of(x, op)
    mean, var, invstd, d = row_stats(rows, op, eps)
    y = from_rows(d * invstd[:, None], x, op)
    if gamma is not None:
        y = y * gamma_of(gamma, op, x) + broadcast(beta, op, x)
    out = {"dst": y, "mean": mean, "invstd": invstd}
    if running is not None:
        if op["kind"] != "batch_norm":
            raise bn.Unsupported("running statistics: batch norm only in float16")
        out.update(update_running(convention, momentum, rows.shape[1], running, mean, var))
    return out


def update_running(convention, momentum, L, running, mean, var):
    """The running update in float16, under numpy_bn's conventions."""
    old_mean, old_var, nbt = running
    nbt += 1
    if L == 0 and convention == "pytorch":  # empty input: statistics untouched
        return {"running_mean": old_mean, "running_var": old_var, "num_batches_tracked": nbt}
    f = H(bn.update_factor(convention, momentum, nbt))
    if bn.CONVENTIONS[convention][1] == "unbiased" and L >= 2:
        var = var * H(L / (L - 1))
    return {"running_mean": (H(1) - f) * old_mean + f * mean,
            "running_var": (H(1) - f) * old_var + f * var, "num_batches_tracked": nbt}


def forward_inference(x, gamma, beta, eps, running_mean, running_var):
    """Batch norm with its running statistics, in float16."""
    op = {"kind": "batch_norm"}
    shape = (1, -1) + (1,) * (x.ndim - 2)
    invstd = H(1) / np.sqrt(running_var + H(eps))
    y = (x - running_mean.reshape(shape)) * invstd.reshape(shape)
    if gamma is not None:
        y = y * gamma_of(gamma, op, x) + beta.reshape(shape)
    return {"dst": y}


def backward_training(x, dy, op, gamma, eps, convention):
    """dx = invstd * (g - mean(g) - xhat * mean(g * xhat)) with g = gamma * dy (RMS norm: no
    mean(g)); dgamma = sum(dy * xhat), dbeta = sum(dy)."""
    check_training(x, op, convention)
    rows = rows_of(x, op)
    _, _, invstd, d = row_stats(rows, op, eps)
    xhat = d * invstd[:, None]
    gm = gamma_of(gamma, op, x)
    g = rows_of(dy if gm is None else dy * gm, op)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean_g = g.mean(axis=1) if op["centred"] else np.zeros(rows.shape[0], dtype=H)
        mean_gx = (g * xhat).mean(axis=1)
    dx = invstd[:, None] * (g - mean_g[:, None] - xhat * mean_gx[:, None])
    out = {"diff_src": from_rows(dx, x, op)}
    if gamma is not None:
        out["diff_gamma"] = parameter_sum(dy * from_rows(xhat, x, op), op)
        out["diff_beta"] = parameter_sum(dy, op)
    return out


def backward_inference(x, dy, gamma, eps, running_mean, running_var):
    """Batch norm with its running statistics held constant, in float16."""
    shape = (1, -1) + (1,) * (x.ndim - 2)
    invstd = H(1) / np.sqrt(running_var + H(eps))
    scale = invstd if gamma is None else gamma * invstd
    out = {"diff_src": scale.reshape(shape) * dy}
    if gamma is not None:
        xhat = (x - running_mean.reshape(shape)) * invstd.reshape(shape)
        out["diff_gamma"] = parameter_sum(dy * xhat, {"kind": "batch_norm"})
        out["diff_beta"] = parameter_sum(dy, {"kind": "batch_norm"})
    return out


if __name__ == "__main__":
    # The float16 variance overflows where float32 arithmetic does not.
    x = np.array([[0.0], [600.0]], dtype=H)
    bn_op = {"kind": "batch_norm", "centred": True}
    with np.errstate(all="ignore"):
        r = forward_training(x, bn_op, None, None, 1e-5, "pytorch")
        var = x.var(axis=0)
    print("var of {0, 600} in float16:", var, "dst:", r["dst"].ravel())
    assert math.isinf(float(var[0]))
