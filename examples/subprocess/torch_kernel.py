#!/usr/bin/env python3
"""PyTorch's own CPU batch norm behind bnoracle's subprocess protocol.

    bnoracle check --exec "/usr/bin/python3 examples/subprocess/torch_kernel.py"

Calls torch.ops.aten.native_batch_norm and native_batch_norm_backward (what
torch.nn.BatchNorm*d runs) on float32 tensors, one thread. What nn.BatchNorm does around them is
done here the same way: the refusal of one value per channel in training (F.batch_norm's
ValueError), num_batches_tracked += 1 and momentum=None as the factor 1/num_batches_tracked.
The fold is torch.nn.utils.fusion's; the SyncBN merge is not offered (no CPU implementation).
Protocol: docs/subprocess-protocol.md. Only the protocol goes to stdout.
"""

import json
import sys

import torch

torch.set_num_threads(1)
MODES = ["forward_training", "forward_inference", "backward_training", "backward_inference"]
LAYOUTS = ["nc", "ncl", "nchw", "nhwc", "ncdhw", "ndhwc", "strided"]


def t(values, shape=None):
    """Hex-float strings to a float32 tensor (exact: every value is a float32)."""
    a = torch.tensor([float.fromhex(v) for v in values], dtype=torch.float64).float()
    return a.reshape(shape) if shape is not None else a


def hexes(a):
    return [float.hex(v) for v in a.reshape(-1).tolist()]  # float32 -> Python float is exact


def in_layout(a, layout):
    """Tensors arrive in logical order; a channels-last case is run in PyTorch's channels-last
    memory format, as a model converted with .to(memory_format=torch.channels_last) runs it
    (PyTorch's batch norm takes another code path there: docs/real-kernels.md)."""
    if layout == "nhwc":
        return a.contiguous(memory_format=torch.channels_last)
    if layout == "ndhwc":
        return a.contiguous(memory_format=torch.channels_last_3d)
    return a


def fold(req):
    """Folding as torch.nn.utils.fusion does it for torch.ao.quantization.fuse_modules and
    torch.fx's fuser: fuse_conv_bn_weights on the (O, K) weight (a linear layer, or a convolution
    flattened to its fan-in; the arithmetic is the same)."""
    from torch.nn.utils.fusion import fuse_conv_bn_weights
    inp, o, k = req["inputs"], req["out_channels"], req["fan_in"]
    bias = t(inp["bias"]) if "bias" in inp else None
    w, b = fuse_conv_bn_weights(t(inp["weight"], (o, k)), bias, t(inp["running_mean"]),
                                t(inp["running_var"]), float.fromhex(req["eps"]),
                                t(inp["gamma"]), t(inp["beta"]))
    return {"weight": w.detach(), "bias": b.detach()}


def compute(req):
    if req.get("op") == "fold":
        return "ok", fold(req)
    if "op" in req:  # SyncBatchNorm's merge has no CPU implementation in PyTorch 1.13
        return "unsupported", "operation %s is not provided" % req["op"]
    mode, shape, inp = req["mode"], tuple(req["shape"]), req["inputs"]
    eps = float.fromhex(req["eps"])
    momentum = None if req["momentum"] is None else float.fromhex(req["momentum"])
    x = in_layout(t(inp["src"], shape), req["layout"])
    weight = t(inp["gamma"]) if req["affine"] else None
    bias = t(inp["beta"]) if req["affine"] else None
    training = mode in ("forward_training", "backward_training")
    if training and x.numel() // max(shape[1], 1) == 1 and shape[1] > 0:
        return "refused", "Expected more than 1 value per channel when training"
    if x.numel() == 0:
        return "ok", empty_batch(req, mode, shape)
    rm = t(inp["running_mean"]) if "running_mean" in inp else None
    rv = t(inp["running_var"]) if "running_var" in inp else None
    if mode == "forward_training":
        out = {}
        factor = 0.0
        if req["track_running"]:
            nbt = int(inp["num_batches_tracked"]) + 1
            factor = 1.0 / nbt if momentum is None else momentum
            out["num_batches_tracked"] = nbt
        y, save_mean, save_invstd = torch.ops.aten.native_batch_norm(
            x, weight, bias, rm, rv, True, factor, eps)
        out.update(dst=y, save_mean=save_mean, save_stat=save_invstd)
        if req["track_running"]:
            out.update(running_mean=rm, running_var=rv)  # updated in place
        return "ok", out
    if mode == "forward_inference":
        y, _, _ = torch.ops.aten.native_batch_norm(x, weight, bias, rm, rv, False, 0.0, eps)
        return "ok", {"dst": y}
    dy = in_layout(t(inp["diff_dst"], shape), req["layout"])
    affine = req["affine"]
    if mode == "backward_training":
        sm, si = t(inp["save_mean"]), t(inp["save_stat"])
        dx, dg, db = torch.ops.aten.native_batch_norm_backward(
            dy, x, weight, None, None, sm, si, True, eps, [True, affine, affine])
    else:
        dx, dg, db = torch.ops.aten.native_batch_norm_backward(
            dy, x, weight, rm, rv, None, None, False, eps, [True, affine, affine])
    out = {"diff_src": dx}
    if affine:
        out.update(diff_gamma=dg, diff_beta=db)
    return "ok", out


def empty_batch(req, mode, shape):
    """No elements: aten::batch_norm returns before native_batch_norm (which divides by zero)."""
    c, inp = shape[1], req["inputs"]
    nan, zeros, empty = torch.full((c,), float("nan")), torch.zeros(c), torch.empty(shape)
    if mode == "forward_training":
        out = {"dst": empty, "save_mean": nan, "save_stat": nan}
        if req["track_running"]:  # untouched, but nn.BatchNorm counts the step
            out.update(running_mean=t(inp["running_mean"]), running_var=t(inp["running_var"]),
                       num_batches_tracked=int(inp["num_batches_tracked"]) + 1)
        return out
    if mode == "forward_inference":
        return {"dst": empty}
    out = {"diff_src": empty}
    if req["affine"]:
        out.update(diff_gamma=zeros, diff_beta=zeros)
    return out


def answer(req):
    try:
        with torch.no_grad():
            status, out = compute(req)
    except Exception as e:  # fails this call only
        return {"id": req.get("id"), "status": "failed", "message": "%s: %s" % (type(e).__name__, e)}
    if status != "ok":
        return {"id": req["id"], "status": status, "message": out}
    outputs = {k: (v if k == "num_batches_tracked" else hexes(v)) for k, v in out.items()}
    return {"id": req["id"], "status": "ok", "outputs": outputs}


def main():
    send = lambda obj: print(json.dumps(obj), flush=True)  # noqa: E731
    send({"protocol": "bnoracle-kernel", "version": 1, "name": "torch_native_batch_norm",
          "kernel_version": torch.__version__, "convention": "pytorch", "layouts": LAYOUTS,
          "modes": MODES, "updates_running": True, "supports_cumulative": True,
          "saves": "mean_invstd", "operations": ["fold"]})
    for line in iter(sys.stdin.readline, ""):
        send(answer(json.loads(line)))


if __name__ == "__main__":
    main()
