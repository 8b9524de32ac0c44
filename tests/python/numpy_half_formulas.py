#!/usr/bin/env python3
"""examples/python/numpy_half.py computes what numpy_bn.py and numpy_norms.py compute: evaluated
on float32 arrays (its float16 type replaced by float32) its outputs agree with theirs to a few
float32 roundings, for every op and mode it implements. bnoracle's verdicts on it in float16
(docs/real-kernels.md) are then the cost of float16 arithmetic, not a slip in its formulas.

    /usr/bin/python3 tests/python/numpy_half_formulas.py
"""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "examples", "python"))
import numpy_bn as bn  # noqa: E402
import numpy_half as half  # noqa: E402
import numpy_norms as norms  # noqa: E402

half.H = np.float32
F32 = np.float32
RTOL = 1e-4  # a few hundred float32 ulps: the two differ in summation order only
failures = []


def close(name, got, want):
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    scale = np.maximum(np.abs(want), np.abs(want).max() if want.size else 1.0)
    bad = np.abs(got - want) > RTOL * scale + 1e-30
    if got.shape != want.shape or bad.any():
        failures.append("%s: got %s want %s" % (name, got.ravel()[:4], want.ravel()[:4]))


def op(kind, **kw):
    base = {"kind": kind, "normalized_axes": 1, "groups": 0, "centred": kind != "rms_norm",
            "params": "per_channel" if kind in ("group_norm", "instance_norm")
            else "per_normalized_element", "weight_offset": False, "running_stats": False}
    base.update(kw)
    return base


rng = np.random.default_rng(7)
x = (rng.standard_normal((4, 6, 3, 5)) * 3 + 1).astype(F32)
dy = rng.standard_normal(x.shape).astype(F32)
eps = 1e-5

# Batch norm: every mode.
g, b = rng.standard_normal(6).astype(F32), rng.standard_normal(6).astype(F32)
rm, rv = rng.standard_normal(6).astype(F32), (rng.random(6) + 0.5).astype(F32)
bn_op = {"kind": "batch_norm", "centred": True}
want = bn.forward_training(x, g, b, eps, "pytorch", 0.1, (rm, rv, 3))
got = half.forward_training(x, bn_op, g, b, eps, "pytorch", 0.1, (rm, rv, 3))
for k_got, k_want in (("dst", "dst"), ("mean", "mean"), ("invstd", "invstd"),
                      ("running_mean", "running_mean"), ("running_var", "running_var")):
    close("batch_norm forward_training " + k_got, got[k_got], want[k_want])
close("batch_norm forward_inference", half.forward_inference(x, g, b, eps, rm, rv)["dst"],
      bn.forward_inference(x, g, b, eps, rm, rv)["dst"])
for mode, got, want in (
        ("backward_training", half.backward_training(x, dy, bn_op, g, eps, "pytorch"),
         bn.backward_training(x, dy, g, eps, "pytorch")),
        ("backward_inference", half.backward_inference(x, dy, g, eps, rm, rv),
         bn.backward_inference(x, dy, g, eps, rm, rv))):
    for k in ("diff_src", "diff_gamma", "diff_beta"):
        close("batch_norm %s %s" % (mode, k), got[k], want[k])

# Layer, RMS (with and without the weight offset), group and instance norm: training modes.
for o in (op("layer_norm", normalized_axes=2), op("rms_norm"),
          op("rms_norm", weight_offset=True), op("group_norm", groups=3), op("instance_norm")):
    k = o["normalized_axes"]
    n_params = 6 if o["params"] == "per_channel" else int(np.prod(x.shape[x.ndim - k:]))
    g = rng.standard_normal(n_params).astype(F32)
    b = rng.standard_normal(n_params).astype(F32)
    got = half.forward_training(x, o, g, b, eps, "pytorch")
    want = norms.forward_training(x, o, g, b, eps, "pytorch")
    for k in ("dst", "mean", "invstd"):
        close("%s forward_training %s" % (o["kind"], k), got[k], want[k])
    got = half.backward_training(x, dy, o, g, eps, "pytorch")
    want = norms.backward_training(x, dy, o, g, eps, "pytorch")
    for k in ("diff_src", "diff_gamma", "diff_beta"):
        close("%s backward_training %s" % (o["kind"], k), got[k], want[k])

if failures:
    print("numpy_half.py differs from numpy_bn/numpy_norms in float32:\n  " + "\n  ".join(failures))
    sys.exit(1)
print("numpy_half.py agrees with numpy_bn.py and numpy_norms.py in float32 (every op and mode)")
