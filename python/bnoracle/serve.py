"""The subprocess protocol's kernel side (docs/subprocess-protocol.md, version 2) for a kernel
object of bnoracle.check's form, so that the same class runs in process and in a process of its
own:

    # my_kernel.py
    import bnoracle.serve
    class MyBatchNorm: ...                     # methods per mode, as for bnoracle.check
    if __name__ == "__main__":
        bnoracle.serve.serve(MyBatchNorm())

    bnoracle check --exec "/usr/bin/python3 my_kernel.py"

serve() writes the handshake, then answers one request per line until stdin closes: inputs
arrive as float32 NumPy arrays in logical order, outputs leave as hex floats of their output's
format (rounded to nearest where the kernel returned float32 values for a float16 or bfloat16
output).
"""

from __future__ import annotations

import json
import sys
import traceback
from types import SimpleNamespace

import numpy as np

from . import Refused, Unsupported, _bnoracle

MODES = ("forward_training", "forward_inference", "backward_training", "backward_inference")
LAYOUTS = ["nc", "ncl", "nchw", "nhwc", "ncdhw", "ndhwc", "strided"]


def _round_to(values, fmt):
    """float32 values rounded to nearest-even in fmt (float32 values of that format)."""
    a = np.asarray(values, dtype=np.float32).ravel()
    if fmt == "float16":
        return a.astype(np.float16).astype(np.float32)
    if fmt == "bfloat16":
        bits = a.view(np.uint32).astype(np.uint64)
        rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
        out = rounded.astype(np.uint32).view(np.float32)
        return np.where(np.isnan(a), a, out)
    return a


def _hex(values, fmt):
    return [float(v).hex() if np.isfinite(v) else ("nan" if np.isnan(v) else
                                                    ("inf" if v > 0 else "-inf"))
            for v in _round_to(values, fmt)]


def _floats(values):
    return np.array([float.fromhex(v) if v not in ("nan", "inf", "-inf") else float(v)
                     for v in values], dtype=np.float32)


def handshake(kernel):
    types = list(getattr(kernel, "types", ["float32"]))
    return {"protocol": "bnoracle-kernel", "version": 2,
            "name": getattr(kernel, "name", type(kernel).__name__),
            "kernel_version": str(getattr(kernel, "version", "0")),
            "convention": getattr(kernel, "convention", "pytorch"),
            "layouts": LAYOUTS,
            "modes": [m for m in MODES if hasattr(kernel, m)],
            "ops": list(getattr(kernel, "ops", ["batch_norm"])),
            "types": {"data": types, "parameters": types, "statistics": types},
            "updates_running": bool(getattr(kernel, "updates_running", True)),
            "supports_cumulative": bool(getattr(kernel, "supports_cumulative", False)),
            "saves": getattr(kernel, "saves", "none")}


def _types_text(t):
    if t["data"] == t["parameters"] == t["statistics"]:
        return t["data"]
    return f"data={t['data']},parameters={t['parameters']},statistics={t['statistics']}"


def answer(kernel, request):
    """The response (a dict) of one request."""
    mode = request.get("mode")
    if mode not in MODES:
        return {"id": request.get("id"), "status": "unsupported",
                "message": f"{mode}: this kernel provides the four modes only"}
    op = request["op"]
    types = request["types"]
    inputs = request.get("inputs", {})
    shape = request["shape"]

    def vector(name):
        return _floats(inputs[name]) if name in inputs else None

    src = vector("src")
    call = SimpleNamespace(
        mode=mode,
        op=_bnoracle.describe_op(op["kind"], op["normalized_axes"], op["groups"], op["centred"],
                                 op["params"], op["weight_offset"], op["running_stats"],
                                 op.get("cast_before_weight", False)),
        types=_types_text(types), eps=float.fromhex(request["eps"]),
        momentum=None if request.get("momentum") is None else float.fromhex(request["momentum"]),
        track_running=bool(request.get("track_running", False)),
        src=src.reshape(shape),
        diff_dst=None if "diff_dst" not in inputs else vector("diff_dst").reshape(shape),
        gamma=vector("gamma"), beta=vector("beta"), running_mean=vector("running_mean"),
        running_var=vector("running_var"), num_batches_tracked=inputs.get("num_batches_tracked"),
        save_mean=vector("save_mean"), save_stat=vector("save_stat"))
    try:
        outputs = getattr(kernel, mode)(call)
    except Unsupported as e:
        return {"id": request["id"], "status": "unsupported", "message": str(e)}
    except Refused as e:
        return {"id": request["id"], "status": "refused", "message": str(e)}
    except Exception:  # the kernel's own failure: reported, the process goes on
        return {"id": request["id"], "status": "failed",
                "message": traceback.format_exc(limit=3)[-2000:]}
    role = {"dst": "data", "diff_src": "data", "diff_gamma": "parameters",
            "diff_beta": "parameters", "save_mean": "statistics", "save_stat": "statistics",
            "running_mean": "statistics", "running_var": "statistics"}
    out = {}
    for name, values in outputs.items():
        if name == "num_batches_tracked":
            out[name] = int(values)
        elif name in role:
            out[name] = _hex(values, types[role[name]])
    return {"id": request["id"], "status": "ok", "message": "", "outputs": out}


def serve(kernel, stdin=None, stdout=None):
    """Speaks the protocol on stdin/stdout until stdin closes."""
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    stdout.write(json.dumps(handshake(kernel)) + "\n")
    stdout.flush()
    for line in stdin:
        if not line.strip():
            continue
        stdout.write(json.dumps(answer(kernel, json.loads(line))) + "\n")
        stdout.flush()
