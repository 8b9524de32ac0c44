#!/usr/bin/env python3
"""A small, readable float32 batch norm in numpy: the worked example for `bnoracle verify`.

Tensors are in logical order (N, C, spatial...). Every statistic is per channel, a reduction
over every axis except axis 1. Everything is computed in float32, with a two-pass variance:

    mean = x.mean(axes)                  var = ((x - mean) ** 2).mean(axes)    (biased)
    invstd = 1 / sqrt(var + eps)         y = gamma * (x - mean) * invstd + beta

The running statistics follow the conventions of docs/conventions.md:

    running = (1 - f) * old + f * new

f is the momentum m where momentum weighs the new value (pytorch, cudnn, tensorflow, miopen),
1 - m where it weighs the old value (keras, onnx, flax), and 1 / num_batches_tracked for PyTorch's
cumulative average (momentum None; the counter is incremented first). The running variance is
the unbiased estimate var * L / (L - 1) (pytorch, cudnn, tensorflow, miopen) or the biased one
(keras, onnx, flax), where L = N * spatial size is the number of elements per channel.

Run with the Debian numpy: /usr/bin/python3 (see README.md).
"""

import math
import warnings

import numpy as np

F32 = np.float32

# convention: (momentum weighs "new" or "old" value, running variance estimator)
CONVENTIONS = {
    "pytorch": ("new", "unbiased"),
    "cudnn": ("new", "unbiased"),
    "tensorflow": ("new", "unbiased"),
    "miopen": ("new", "unbiased"),
    "keras": ("old", "biased"),
    "onnx": ("old", "biased"),
    "flax": ("old", "biased"),
}

# Deliberate bugs, to show that `bnoracle verify` catches them.
WRONG_VARIANTS = ("biased_running_var",)


class Refused(Exception):
    """The convention rejects the problem (the results file then says status "refused")."""


class Unsupported(Exception):
    """This example does not implement the problem (status "unsupported")."""


def reduce_axes(x):
    """Every axis but the channel axis (1): (0, 2, 3, ...)."""
    return tuple(i for i in range(x.ndim) if i != 1)


def per_channel(v, ndim):
    """A length-C vector shaped to broadcast against an (N, C, spatial...) tensor."""
    return np.asarray(v, dtype=F32).reshape((1, -1) + (1,) * (ndim - 2))


def elements_per_channel(x):
    return x.size // x.shape[1] if x.shape[1] else 0


def batch_stats(x):
    """Two-pass float32 mean and biased variance per channel (NaN for an empty batch)."""
    axes = reduce_axes(x)
    with warnings.catch_warnings():  # "Mean of empty slice" for L = 0: the result is NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = x.mean(axis=axes, dtype=F32)
        d = x - per_channel(mean, x.ndim)
        var = (d * d).mean(axis=axes, dtype=F32)
    return mean.astype(F32), var.astype(F32)


def invstd_of(var, eps):
    return (F32(1) / np.sqrt(var + F32(eps))).astype(F32)


def check_training(convention, L):
    if convention not in CONVENTIONS:
        raise Unsupported("unknown convention " + convention)
    if convention == "pytorch" and L == 1:
        # F.batch_norm raises ValueError in training (forward and backward).
        raise Refused("pytorch: expected more than 1 value per channel when training")


def update_factor(convention, momentum, num_batches_tracked):
    """f, the weight of the new batch statistic; num_batches_tracked is already incremented."""
    if momentum is None:
        if convention != "pytorch":
            raise Unsupported("momentum=None (cumulative average) is a pytorch feature only")
        return F32(1.0 / num_batches_tracked)
    weighs, _ = CONVENTIONS[convention]
    return F32(momentum) if weighs == "new" else F32(1.0 - momentum)


def update_running(convention, momentum, L, old_mean, old_var, mean, var, num_batches_tracked,
                   wrong=None):
    """New (running_mean, running_var, num_batches_tracked) after one training step."""
    num_batches_tracked += 1  # every training step counts, even an empty batch (PyTorch)
    old_mean = np.asarray(old_mean, dtype=F32)
    old_var = np.asarray(old_var, dtype=F32)
    if L == 0:
        if convention == "pytorch":  # empty input: returned early, stats untouched
            return old_mean.copy(), old_var.copy(), num_batches_tracked
        if convention == "tensorflow":  # "If input is empty, return NaN mean/variance"
            nan = np.full_like(old_mean, np.nan)
            return nan, nan.copy(), num_batches_tracked
        # keras, flax: no guard, NaN flows through (mean and var are NaN); others unspecified.
    f = update_factor(convention, momentum, num_batches_tracked)
    _, estimator = CONVENTIONS[convention]
    if wrong == "biased_running_var":
        estimator = "biased"  # the deliberate bug
    new_var = var
    if estimator == "unbiased" and L >= 2:
        new_var = (var * F32(L / (L - 1))).astype(F32)
    elif estimator == "unbiased" and L == 1 and convention == "cudnn":
        new_var = np.full_like(var, np.nan)  # 0/0: reported NaN running variance
    # L = 1 for tensorflow and miopen: the correction is skipped (divisor max(L - 1, 1)).
    one_minus_f = F32(1) - f
    running_mean = (one_minus_f * old_mean + f * mean).astype(F32)
    running_var = (one_minus_f * old_var + f * new_var).astype(F32)
    return running_mean, running_var, num_batches_tracked


def forward_training(x, gamma, beta, eps, convention, momentum=None, running=None, wrong=None):
    """Training forward pass. running: (mean, var, num_batches_tracked) or None (no tracking).

    Returns a dict of outputs: dst, mean, var, invstd, and running_mean, running_var and
    num_batches_tracked when running statistics are tracked.
    """
    L = elements_per_channel(x)
    check_training(convention, L)
    mean, var = batch_stats(x)
    invstd = invstd_of(var, eps)
    out = {
        "dst": normalize(x, mean, invstd, gamma, beta),
        "mean": mean,
        "var": var,
        "invstd": invstd,
    }
    if running is not None:
        old_mean, old_var, nbt = running
        rm, rv, nbt = update_running(convention, momentum, L, old_mean, old_var, mean, var, nbt,
                                     wrong)
        out.update(running_mean=rm, running_var=rv, num_batches_tracked=nbt)
    return out


def forward_inference(x, gamma, beta, eps, running_mean, running_var):
    """Inference forward pass: normalizes with the running statistics."""
    mean = np.asarray(running_mean, dtype=F32)
    invstd = invstd_of(np.asarray(running_var, dtype=F32), eps)
    return {"dst": normalize(x, mean, invstd, gamma, beta)}


def normalize(x, mean, invstd, gamma, beta):
    # gamma * invstd first: (x - mean) * invstd alone can overflow where the result does not.
    n = x.ndim
    scale = invstd if gamma is None else (np.asarray(gamma, dtype=F32) * invstd).astype(F32)
    y = (x - per_channel(mean, n)) * per_channel(scale, n)
    if gamma is not None:
        y = y + per_channel(beta, n)
    return y.astype(F32)


def backward_training(x, dy, gamma, eps, convention):
    """Gradients through the batch statistics:

    dx = gamma * invstd * (dy - mean(dy) - xhat * mean(dy * xhat)),
    dgamma = sum(dy * xhat), dbeta = sum(dy).
    """
    L = elements_per_channel(x)
    check_training(convention, L)
    n, axes = x.ndim, reduce_axes(x)
    mean, var = batch_stats(x)
    invstd = invstd_of(var, eps)
    xhat = (x - per_channel(mean, n)) * per_channel(invstd, n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        m1 = dy.mean(axis=axes, dtype=F32)
        m2 = (dy * xhat).mean(axis=axes, dtype=F32)
    scale = invstd if gamma is None else np.asarray(gamma, dtype=F32) * invstd
    dx = per_channel(scale, n) * (dy - per_channel(m1, n) - xhat * per_channel(m2, n))
    out = {"diff_src": dx.astype(F32)}
    if gamma is not None:
        out["diff_gamma"] = (dy * xhat).sum(axis=axes, dtype=F32)
        out["diff_beta"] = dy.sum(axis=axes, dtype=F32)
    return out


def backward_inference(x, dy, gamma, eps, running_mean, running_var):
    """Gradients with the running statistics held constant: dx = gamma * invstd * dy."""
    n, axes = x.ndim, reduce_axes(x)
    invstd = invstd_of(np.asarray(running_var, dtype=F32), eps)
    scale = invstd if gamma is None else np.asarray(gamma, dtype=F32) * invstd
    out = {"diff_src": (per_channel(scale, n) * dy).astype(F32)}
    if gamma is not None:
        xhat = (x - per_channel(running_mean, n)) * per_channel(invstd, n)
        out["diff_gamma"] = (dy * xhat).sum(axis=axes, dtype=F32)
        out["diff_beta"] = dy.sum(axis=axes, dtype=F32)
    return out


if __name__ == "__main__":
    # A tiny demonstration: one PyTorch-style training step.
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 2, 2)).astype(F32)
    with np.errstate(all="ignore"):
        r = forward_training(x, np.ones(3, F32), np.zeros(3, F32), 1e-5, "pytorch", 0.1,
                             (np.zeros(3, F32), np.ones(3, F32), 0))
    for k, v in r.items():
        print(k, v if np.ndim(v) == 0 or np.size(v) <= 3 else np.asarray(v).ravel()[:4], sep=": ")
    assert math.isclose(float(r["mean"][0]), float(x[:, 0].mean()), rel_tol=1e-6)


def fold(weight, bias, gamma, beta, running_mean, running_var, eps):
    """Folds batch norm into the preceding layer: W' = W*gamma*r, b' = (b - mean)*gamma*r + beta.

    `weight` is (O, K) for O output channels; `bias` is None when the layer has none.
    """
    r = (F32(1) / np.sqrt(running_var + F32(eps))).astype(F32)
    s = (gamma * r).astype(F32)
    b = np.zeros_like(gamma) if bias is None else bias
    return {"weight": (weight * s[:, None]).astype(F32),
            "bias": ((b - running_mean) * s + beta).astype(F32)}


def syncbn_merge(counts, shard_mean, shard_var, eps, convention, momentum, old_mean, old_var,
                 num_batches_tracked):
    """Merges per-shard (count, mean, biased var) of C channels, as SyncBN does (Chan et al.).

    `shard_mean`, `shard_var` are (S, C); `counts` has S entries (0 and 1 are allowed).
    """
    n_i = np.asarray(counts, dtype=F32)[:, None]
    n = F32(np.sum(counts))
    mean = (np.sum(n_i * shard_mean, axis=0, dtype=F32) / n).astype(F32)
    dev = (shard_mean - mean).astype(F32)
    m2 = np.sum(n_i * shard_var + n_i * dev * dev, axis=0, dtype=F32)
    var = (m2 / n).astype(F32)
    out = {"mean": mean, "var": var, "invstd": invstd_of(var, eps)}
    rm, rv, nbt = update_running(convention, momentum, int(np.sum(counts)), old_mean, old_var,
                                 mean, var, num_batches_tracked)
    out.update({"running_mean": rm, "running_var": rv, "num_batches_tracked": nbt})
    return out
