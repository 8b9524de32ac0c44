#!/usr/bin/env python3
"""A numpy normalization kernel behind bnoracle's subprocess protocol.

    bnoracle check --exec "/usr/bin/python3 examples/subprocess/numpy_kernel.py"
    bnoracle check --types cudnn_mixed --exec "/usr/bin/python3 examples/subprocess/numpy_kernel.py"
    bnoracle check --types all_half \
        --exec "/usr/bin/python3 examples/subprocess/numpy_kernel.py --compute float16"

The protocol (docs/subprocess-protocol.md, version 2): write a handshake line, then answer every
request line on stdin with one response line on stdout. Tensors arrive in logical order (N, C,
spatial...), so every layout works without looking at strides. Batch norm's numerics are those
of examples/python/numpy_bn.py (float32 throughout, two-pass variance, PyTorch's conventions:
momentum=None, refusal of one value per channel in training, an empty batch). It also provides
the protocol's two operations, the fold and the SyncBN merge (numpy_bn.fold, syncbn_merge).
Layer, RMS, group and instance norm are examples/python/numpy_norms.py, in the same style: the
training modes, and for instance norm with running statistics the inference modes and the
running update under the claimed convention.

Data types: every role (data, parameters, statistics) in float32 or float16 (NumPy has no
bfloat16). The float16 values are read exactly into float32 arrays, computed as above, and each
output is rounded once to its role's type: how float16 data is held correctly.
With `--compute float16` the kernel is examples/python/numpy_half.py instead: the same formulas
on float16 arrays, as NumPy evaluates them (float16 squares and sums), in the all-float16
configuration only. It is there to be caught (docs/real-kernels.md, "NumPy in float16").

Arguments: the convention to claim (default pytorch; see `bnoracle conventions`), and
`--compute float16`. Only the protocol goes to stdout; diagnostics belong on stderr.
"""

import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import numpy_bn as bn  # noqa: E402
import numpy_half as half  # noqa: E402
import numpy_norms as norms  # noqa: E402

F32 = np.float32
DTYPES = {"float32": np.float32, "float16": np.float16}
# The type role of every output.
ROLE = {"dst": "data", "diff_src": "data", "diff_gamma": "parameters", "diff_beta": "parameters",
        "save_mean": "statistics", "save_stat": "statistics", "running_mean": "statistics",
        "running_var": "statistics"}
MODES = ["forward_training", "forward_inference", "backward_training", "backward_inference"]
LAYOUTS = ["nc", "ncl", "nchw", "nhwc", "ncdhw", "ndhwc", "strided"]


def f32(values, shape=None):
    """Hex-float strings ("0x1.8p+1", "nan", "inf", "-inf") to a float32 array (exact)."""
    a = np.array([float.fromhex(v) for v in values], dtype=np.float64).astype(F32)
    return a.reshape(shape) if shape is not None else a


def hexes(a, dtype=F32):
    """An array rounded once to `dtype` (float32 or float16), as hex-float strings in logical (C)
    order; float32 and float16 -> float is exact."""
    return [float.hex(float(v)) for v in np.asarray(a).astype(dtype).ravel()]


def f16(values, shape=None):
    """Hex-float strings of float16 values to a float16 array (exact)."""
    return f32(values, shape).astype(np.float16)


def operation(req, convention):
    """The SyncBN merge and the fold (protocol version 2 names them in "mode")."""
    inp, eps, what = req["inputs"], float.fromhex(req["eps"]), req["mode"]
    if what == "fold":
        o, k = req["out_channels"], req["fan_in"]
        bias = f32(inp["bias"]) if "bias" in inp else None
        return bn.fold(f32(inp["weight"], (o, k)), bias, f32(inp["gamma"]), f32(inp["beta"]),
                       f32(inp["running_mean"]), f32(inp["running_var"]), eps)
    if what == "syncbn_merge":
        c, counts = req["channels"], req["counts"]
        momentum = None if req["momentum"] is None else float.fromhex(req["momentum"])
        shards = (len(counts), c)
        track = req["track_running"]
        zeros = np.zeros(c, dtype=F32)
        old_mean = f32(inp["running_mean"]) if track else zeros
        old_var = f32(inp["running_var"]) if track else zeros
        out = bn.syncbn_merge(counts, f32(inp["shard_mean"], shards), f32(inp["shard_var"], shards),
                              eps, convention, momentum if track else 0.0, old_mean, old_var,
                              int(inp["num_batches_tracked"]) if track else 0)
        if not track:
            for k in ("running_mean", "running_var", "num_batches_tracked"):
                out.pop(k)
        return out
    raise bn.Unsupported("unknown operation " + what)


def compute(req, convention, compute_type):
    mode, shape, inp = req["mode"], tuple(req.get("shape", ())), req["inputs"]
    if mode in ("fold", "syncbn_merge"):
        if compute_type != "float32":
            raise bn.Unsupported("the float16 kernel has no %s" % mode)
        return operation(req, convention)
    types = set(req["types"].values())
    if compute_type == "float16":
        if types != {"float16"}:
            raise bn.Unsupported("the float16 kernel computes in its data's type: float16 only")
        return half_kernel(req, convention)
    if not types <= set(DTYPES):
        raise bn.Unsupported("NumPy has no bfloat16")
    if req["op"]["kind"] != "batch_norm":
        return family(req, convention)
    eps = float.fromhex(req["eps"])
    momentum = None if req["momentum"] is None else float.fromhex(req["momentum"])
    x = f32(inp["src"], shape)
    gamma = f32(inp["gamma"]) if req["affine"] else None
    beta = f32(inp["beta"]) if req["affine"] else None
    if mode == "forward_training":
        running = None
        if req["track_running"]:
            running = (f32(inp["running_mean"]), f32(inp["running_var"]),
                       int(inp["num_batches_tracked"]))
        r = bn.forward_training(x, gamma, beta, eps, convention, momentum, running)
        out = {"dst": r["dst"], "save_mean": r["mean"], "save_stat": r["invstd"]}
        if running is not None:
            out.update(running_mean=r["running_mean"], running_var=r["running_var"],
                       num_batches_tracked=r["num_batches_tracked"])
        return out
    rm = f32(inp["running_mean"]) if "running_mean" in inp else None
    rv = f32(inp["running_var"]) if "running_var" in inp else None
    if mode == "forward_inference":
        return bn.forward_inference(x, gamma, beta, eps, rm, rv)
    dy = f32(inp["diff_dst"], shape)
    if mode == "backward_training":
        return bn.backward_training(x, dy, gamma, eps, convention)
    if mode == "backward_inference":
        return bn.backward_inference(x, dy, gamma, eps, rm, rv)
    raise bn.Unsupported("unknown mode " + mode)


def family(req, convention):
    """Layer, RMS, group and instance norm (numpy_norms): training modes, and for instance norm
    with running statistics the inference modes and the running update."""
    op, mode, shape, inp = req["op"], req["mode"], tuple(req["shape"]), req["inputs"]
    if op["kind"] not in norms.KINDS:
        raise bn.Unsupported("op " + op["kind"])
    eps = float.fromhex(req["eps"])
    x = f32(inp["src"], shape)
    gamma = f32(inp["gamma"]) if req["affine"] else None
    beta = f32(inp["beta"]) if req["affine"] and "beta" in inp else None
    if mode == "forward_training":
        running = None
        if req["track_running"]:
            running = (f32(inp["running_mean"]), f32(inp["running_var"]),
                       int(inp["num_batches_tracked"]))
        momentum = None if req["momentum"] is None else float.fromhex(req["momentum"])
        r = norms.forward_training(x, op, gamma, beta, eps, convention, momentum, running)
        out = {"dst": r["dst"], "save_mean": r["mean"], "save_stat": r["invstd"]}
        if running is not None:
            out.update(running_mean=r["running_mean"], running_var=r["running_var"],
                       num_batches_tracked=r["num_batches_tracked"])
        return out
    if mode == "backward_training":
        return norms.backward_training(x, f32(inp["diff_dst"], shape), op, gamma, eps, convention)
    if mode not in ("forward_inference", "backward_inference"):
        raise bn.Unsupported("unknown mode " + mode)
    norms.require_running(op)
    rm, rv = f32(inp["running_mean"]), f32(inp["running_var"])
    if mode == "forward_inference":
        return norms.forward_inference(x, op, gamma, beta, eps, rm, rv)
    return norms.backward_inference(x, f32(inp["diff_dst"], shape), op, gamma, eps, rm, rv)


def half_kernel(req, convention):
    """examples/python/numpy_half.py on float16 arrays: every mode of batch norm, the training
    modes of the other ops."""
    op, mode, shape, inp = req["op"], req["mode"], tuple(req["shape"]), req["inputs"]
    if op["kind"] != "batch_norm" and op["kind"] not in norms.KINDS:
        raise bn.Unsupported("op " + op["kind"])
    if op["kind"] == "batch_norm":
        op = dict(op, centred=True)
    eps = float.fromhex(req["eps"])
    x = f16(inp["src"], shape)
    gamma = f16(inp["gamma"]) if req["affine"] else None
    beta = f16(inp["beta"]) if req["affine"] and "beta" in inp else None
    if mode == "forward_training":
        running = None
        if req["track_running"]:
            running = (f16(inp["running_mean"]), f16(inp["running_var"]),
                       int(inp["num_batches_tracked"]))
        momentum = None if req["momentum"] is None else float.fromhex(req["momentum"])
        r = half.forward_training(x, op, gamma, beta, eps, convention, momentum, running)
        out = {"dst": r["dst"], "save_mean": r["mean"], "save_stat": r["invstd"]}
        out.update({k: r[k] for k in ("running_mean", "running_var", "num_batches_tracked")
                    if k in r})
        return out
    if mode == "backward_training":
        return half.backward_training(x, f16(inp["diff_dst"], shape), op, gamma, eps, convention)
    if op["kind"] != "batch_norm" or mode not in MODES:
        raise bn.Unsupported("%s %s in float16" % (op["kind"], mode))
    rm, rv = f16(inp["running_mean"]), f16(inp["running_var"])
    if mode == "forward_inference":
        return half.forward_inference(x, gamma, beta, eps, rm, rv)
    return half.backward_inference(x, f16(inp["diff_dst"], shape), gamma, eps, rm, rv)


def answer(req, convention, compute_type):
    res = {"id": req.get("id"), "status": "ok"}
    try:
        with np.errstate(all="ignore"):  # NaN/Inf inputs and empty batches are legitimate cases
            out = compute(req, convention, compute_type)
    except bn.Refused as e:
        return dict(res, status="refused", message=str(e))
    except bn.Unsupported as e:
        return dict(res, status="unsupported", message=str(e))
    except Exception as e:  # a bug here fails this call only
        return dict(res, status="failed", message="%s: %s" % (type(e).__name__, e))
    types = req.get("types", {})
    outputs = {k: (int(v) if k == "num_batches_tracked"
                   else hexes(v, DTYPES[types.get(ROLE.get(k), "float32")]))
               for k, v in out.items()}
    return dict(res, outputs=outputs)


def main():
    args = sys.argv[1:]
    compute_type = "float32"
    if "--compute" in args:
        i = args.index("--compute")
        compute_type = args[i + 1] if i + 1 < len(args) else ""
        del args[i:i + 2]
        if compute_type not in DTYPES:
            sys.exit("numpy_kernel.py: --compute takes float32 or float16")
    convention = args[0] if args else "pytorch"
    send = lambda obj: print(json.dumps(obj), flush=True)  # noqa: E731
    types = list(DTYPES) if compute_type == "float32" else ["float16"]
    send({"protocol": "bnoracle-kernel", "version": 2,
          "name": "numpy_ref" if compute_type == "float32" else "numpy_half",
          "kernel_version": "1.0", "convention": convention, "layouts": LAYOUTS, "modes": MODES,
          "ops": ["batch_norm"] + list(norms.KINDS),
          "types": {role: types for role in ("data", "parameters", "statistics")},
          "updates_running": True, "supports_cumulative": convention == "pytorch",
          "saves": "mean_invstd",
          "operations": ["syncbn_merge", "fold"] if compute_type == "float32" else []})
    for line in iter(sys.stdin.readline, ""):  # one request per line until stdin closes
        send(answer(json.loads(line), convention, compute_type))


if __name__ == "__main__":
    main()
