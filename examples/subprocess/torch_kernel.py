#!/usr/bin/env python3
"""PyTorch's own CPU normalizations behind bnoracle's subprocess protocol.

    bnoracle check --exec "/usr/bin/python3 examples/subprocess/torch_kernel.py"

Batch norm calls torch.ops.aten.native_batch_norm and native_batch_norm_backward (what
torch.nn.BatchNorm*d runs) on float32 tensors, one thread. What nn.BatchNorm does around them is
done here the same way: the refusal of one value per channel in training (F.batch_norm's
ValueError), num_batches_tracked += 1 and momentum=None as the factor 1/num_batches_tracked.
The fold is torch.nn.utils.fusion's; the SyncBN merge is not offered (no CPU implementation).

Layer, group and instance norm are torch.nn.functional's layer_norm (normalized_shape: the
trailing normalized axes), group_norm and instance_norm (running statistics updated in place,
use_input_stats in training, as nn.InstanceNorm*d calls it); RMS norm, which PyTorch 1.13 does
not have, is HuggingFace transformers' LlamaRMSNorm in float32 (GemmaRMSNorm's 1 + w with the
weight offset). Their saved statistics are those the autograd graph keeps, and the backward
modes differentiate the forward with torch.autograd. nn.InstanceNorm keeps num_batches_tracked
at its value and has no momentum=None; so does this kernel.
In bfloat16 (float16 has no CPU kernels in PyTorch 1.13) the same calls run on bfloat16 tensors,
in the data types PyTorch 1.13's CPU kernels take (others are answered "unsupported"):
  batch and instance norm  bfloat16 data with float32 weight, bias and statistics (a float32
                           module on bfloat16 input: bnoracle's bf16_mixed), or bfloat16
                           everywhere (module.bfloat16(): pytorch_cpu_bf16)
  layer and group norm     bfloat16 everywhere (their CPU kernels take no other weight type and
                           return bfloat16 mean and rstd: pytorch_cpu_bf16)
  RMS norm                 LlamaRMSNorm on bfloat16: the mean square in float32, then
                           weight * hidden.to(bfloat16) (Llama's cast before the weight: the op's
                           cast_before_weight), or GemmaRMSNorm's float32 pipeline cast once at
                           the end (weight offset); bfloat16 weight, float32 rstd (bf16_weights)
Protocol: docs/subprocess-protocol.md (version 2). Only the protocol goes to stdout.
"""

import json
import math
import sys

import torch
import torch.nn.functional as F

torch.set_num_threads(1)
MODES = ["forward_training", "forward_inference", "backward_training", "backward_inference"]
LAYOUTS = ["nc", "ncl", "nchw", "nhwc", "ncdhw", "ndhwc", "strided"]
OPS = ["batch_norm", "layer_norm", "rms_norm", "group_norm", "instance_norm"]


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def t(values, shape=None, dtype=torch.float32):
    """Hex-float strings to a tensor of `dtype` (exact: every value is a value of its type)."""
    a = torch.tensor([float.fromhex(v) for v in values], dtype=torch.float64).to(dtype)
    return a.reshape(shape) if shape is not None else a


def hexes(a):
    # float32 and bfloat16 -> Python float is exact
    return [float.hex(v) for v in a.reshape(-1).float().tolist()]


def types_of(req):
    """The torch dtypes of the data, the parameters and the statistics, or a reason to refuse:
    the combinations PyTorch 1.13's CPU kernels of the op take (module docstring)."""
    names = req["types"]
    if any(n not in DTYPES for n in names.values()):
        return None, "float16 has no CPU kernels in PyTorch 1.13"
    data, params, stats = (DTYPES[names[k]] for k in ("data", "parameters", "statistics"))
    op = req["op"]
    kind = op["kind"]
    if data == torch.float32:
        ok = params == stats == torch.float32
    elif kind in ("batch_norm", "instance_norm"):
        ok = params == stats
    elif kind in ("layer_norm", "group_norm"):
        ok = params == stats == torch.bfloat16
    else:  # rms_norm: Llama casts before the weight, Gemma (weight offset) at the end
        ok = params == torch.bfloat16 and stats == torch.float32 and \
            bool(op.get("cast_before_weight")) != bool(op["weight_offset"])
    if not ok:
        return None, "PyTorch 1.13 CPU has no %s kernel for %s" % (kind, names)
    return (data, params, stats), None


def in_layout(a, layout):
    """Tensors arrive in logical order; a channels-last case is run in PyTorch's channels-last
    memory format, as a model converted with .to(memory_format=torch.channels_last) runs it
    (PyTorch's batch norm and group norm take other code paths there: docs/real-kernels.md)."""
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
    if req["mode"] == "fold":
        return "ok", fold(req)
    if req["mode"] == "syncbn_merge":  # SyncBatchNorm's merge has no CPU implementation in 1.13
        return "unsupported", "operation %s is not provided" % req["mode"]
    dtypes, why = types_of(req)
    if dtypes is None:
        return "unsupported", why
    data, params, stats = dtypes
    if req["op"]["kind"] != "batch_norm":
        return family(req, dtypes)
    mode, shape, inp = req["mode"], tuple(req["shape"]), req["inputs"]
    eps = float.fromhex(req["eps"])
    momentum = None if req["momentum"] is None else float.fromhex(req["momentum"])
    x = in_layout(t(inp["src"], shape, data), req["layout"])
    weight = t(inp["gamma"], None, params) if req["affine"] else None
    bias = t(inp["beta"], None, params) if req["affine"] else None
    training = mode in ("forward_training", "backward_training")
    if training and x.numel() // max(shape[1], 1) == 1 and shape[1] > 0:
        return "refused", "Expected more than 1 value per channel when training"
    if x.numel() == 0:
        return "ok", empty_batch(req, mode, shape)
    rm = t(inp["running_mean"], None, stats) if "running_mean" in inp else None
    rv = t(inp["running_var"], None, stats) if "running_var" in inp else None
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
    dy = in_layout(t(inp["diff_dst"], shape, data), req["layout"])
    affine = req["affine"]
    if mode == "backward_training":
        sm, si = t(inp["save_mean"], None, stats), t(inp["save_stat"], None, stats)
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


# ---- Layer, RMS, group and instance norm ------------------------------------------------------


def rms_norm(x, weight, bias, eps, k, offset):
    """HuggingFace transformers' LlamaRMSNorm (PyTorch 1.13 has no RMS norm op) over the last k
    axes flattened into one hidden axis: the mean square and rsqrt in float32, the normalized
    value cast back to the input type, then weight * hidden in it (for bfloat16 input: Llama's
    cast before the weight). With the weight offset, GemmaRMSNorm's float32 x * (1 + w) cast to
    the input type at the end. LlamaRMSNorm has no bias: beta, when given, is added to its output
    in the input type (Gemma: in float32 before the cast). Returns the output and
    rsqrt(mean(x^2) + eps), the statistic the graph saves (float32)."""
    dtype = x.dtype
    lead = tuple(x.shape[:x.dim() - k])
    hidden = x.reshape(lead + (math.prod(x.shape[x.dim() - k:]),)).to(torch.float32)
    variance = hidden.pow(2).mean(-1, keepdim=True)
    rstd = torch.rsqrt(variance + eps)
    hidden = hidden * rstd
    if weight is None:
        return hidden.to(dtype).reshape(x.shape), rstd
    if offset:
        y = (hidden * (1.0 + weight.float()) + bias.float()).to(dtype)
    else:
        y = weight * hidden.to(dtype) + bias
    return y.reshape(x.shape), rstd


def saved_statistics(y, groups):
    """What the autograd graph of y saved for backward: the mean and the inverse standard
    deviation of every statistic group (native_layer_norm's, native_group_norm's, and for
    instance norm those of the native_batch_norm it runs on the (1, N*C, spatial...) view).
    An instance norm of no element never reaches native_batch_norm and saves nothing: NaN."""
    node = y.grad_fn
    while node is not None and not hasattr(node, "_saved_result2"):
        # Instance norm: through the view back to its shape to the batch norm.
        node = node.next_functions[0][0] if node.next_functions else None
    if node is None:
        nan = torch.full((groups,), float("nan"), dtype=y.dtype)
        return nan, nan.clone()
    return node._saved_result1.reshape(-1), node._saved_result2.reshape(-1)


def family_forward(req, x, weight, bias, running, training, saved=False):
    """The op of the request through torch.nn.functional (RMS norm: rms_norm above). Returns
    the output and, when `saved`, the saved mean and inverse standard deviation (the graph must
    be recorded: x requires grad)."""
    op, eps = req["op"], float.fromhex(req["eps"])
    kind = op["kind"]
    if kind == "rms_norm":
        k = op["normalized_axes"]
        y, rstd = rms_norm(x, weight, bias, eps, k, op["weight_offset"])
        if not saved:
            return y, None, None
        return y, torch.zeros(rstd.numel(), dtype=rstd.dtype), rstd.reshape(-1)
    if kind == "layer_norm":
        shape = tuple(x.shape[x.dim() - op["normalized_axes"]:])
        w = weight.reshape(shape) if weight is not None else None
        b = bias.reshape(shape) if bias is not None else None
        y = F.layer_norm(x, shape, w, b, eps)
    elif kind == "group_norm":
        y = F.group_norm(x, op["groups"], weight, bias, eps)
    elif kind == "instance_norm":
        # nn.InstanceNorm*d: use_input_stats in training (or without running statistics).
        rm, rv = running if running is not None else (None, None)
        momentum = 0.1 if req["momentum"] is None else float.fromhex(req["momentum"])
        y = F.instance_norm(x, rm, rv, weight, bias, training, momentum, eps)
    else:
        raise ValueError("unknown op " + kind)
    if not saved:
        return y, None, None
    save_mean, save_stat = saved_statistics(y, x.shape[0] * x.shape[1])
    return y, save_mean, save_stat


def family(req, dtypes):
    """Layer norm, RMS norm, group norm and instance norm, forward and backward through
    autograd: the backward recomputes the forward (the statistics it saves are those forward
    training returned) and differentiates it, as training a model does."""
    data, params, stats = dtypes
    op, mode, shape, inp = req["op"], req["mode"], tuple(req["shape"]), req["inputs"]
    training = mode in ("forward_training", "backward_training")
    kind = op["kind"]
    if not training and not (kind == "instance_norm" and op["running_stats"]):
        return "unsupported", "%s keeps no running statistics: no inference mode" % kind
    if kind == "instance_norm" and training and req.get("track_running") \
            and req["momentum"] is None:
        # nn.InstanceNorm passes its momentum to F.instance_norm, which takes a float only.
        return "unsupported", "instance_norm has no cumulative average (momentum=None)"
    backward = mode in ("backward_training", "backward_inference")
    x = in_layout(t(inp["src"], shape, data), req["layout"]).requires_grad_(backward)
    weight = t(inp["gamma"], None, params).requires_grad_(backward) if req["affine"] else None
    bias = None
    if req["affine"]:  # beta does not change a gradient; backward requests may leave it out
        bias = t(inp["beta"], None, params) if "beta" in inp else \
            torch.zeros(weight.shape, dtype=params)
        bias.requires_grad_(backward)
    running = None
    if "running_mean" in inp and (not training or req["track_running"]):
        running = (t(inp["running_mean"], None, stats), t(inp["running_var"], None, stats))
    try:
        with torch.enable_grad():
            if not backward:
                saved = mode == "forward_training"
                x.requires_grad_(saved)  # the graph keeps the saved statistics
                y, save_mean, save_stat = family_forward(req, x, weight, bias, running, training,
                                                         saved)
                out = {"dst": y.detach()}
                if saved:
                    out.update(save_mean=save_mean.detach(), save_stat=save_stat.detach())
                if running is not None and saved:
                    # Updated in place; nn.InstanceNorm does not count batches.
                    out.update(running_mean=running[0], running_var=running[1],
                               num_batches_tracked=int(inp["num_batches_tracked"]))
                return "ok", out
            y, _, _ = family_forward(req, x, weight, bias, running, training)
            dy = in_layout(t(inp["diff_dst"], shape, data), req["layout"])
            wanted = [x] + ([weight, bias] if req["affine"] else [])
            grads = torch.autograd.grad(y, wanted, dy, allow_unused=True)
    except ValueError as e:  # F.instance_norm's refusal of one spatial element in training
        if str(e).startswith("Expected more than 1 spatial element when training"):
            return "refused", str(e)
        raise
    grads = [torch.zeros(v.shape, dtype=v.dtype) if g is None else g
             for g, v in zip(grads, wanted)]
    out = {"diff_src": grads[0]}
    if req["affine"]:
        out.update(diff_gamma=grads[1], diff_beta=grads[2])
    return "ok", out


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
    send({"protocol": "bnoracle-kernel", "version": 2, "name": "torch",
          "kernel_version": torch.__version__, "convention": "pytorch", "layouts": LAYOUTS,
          "modes": MODES, "ops": OPS, "updates_running": True, "supports_cumulative": True,
          "types": {role: ["float32", "bfloat16"] for role in ("data", "parameters", "statistics")},
          "saves": "mean_invstd", "operations": ["fold"]})
    for line in iter(sys.stdin.readline, ""):
        send(answer(json.loads(line)))


if __name__ == "__main__":
    main()
