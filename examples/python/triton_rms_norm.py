"""An RMSNorm written in Triton (one program per row, float32 accumulation, the Gemma/fused
convention: x̂·γ + β computed in float32 and cast once), as a kernel for bnoracle — the shape of the
fused kernels LLM training uses. Needs a CUDA GPU with Triton; docs/python.md, "GPU kernels".

CUDA does not survive fork, so the kernel is never run in a forked worker:

    # in the test process (a crash ends the run):
    bnoracle.check(TritonRMSNorm(), op="rms_norm", isolate=False)
    # isolated, in a process of its own that owns its CUDA context:
    build/ci/tools/bnoracle check --exec "/usr/bin/python3 examples/python/triton_rms_norm.py" --op rms_norm
"""
import numpy as np
import torch
import triton
import triton.language as tl

import bnoracle
import bnoracle.serve


@triton.jit
def _rms_forward(X, W, B, Y, RSTD, N, eps, HAS_W: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK)
    mask = cols < N
    x = tl.load(X + row * N + cols, mask=mask, other=0.0).to(tl.float32)
    rstd = 1.0 / tl.sqrt(tl.sum(x * x, axis=0) / N + eps)
    y = x * rstd
    if HAS_W:
        y = y * tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
        y = y + tl.load(B + cols, mask=mask, other=0.0).to(tl.float32)
    tl.store(Y + row * N + cols, y.to(Y.dtype.element_ty), mask=mask)
    tl.store(RSTD + row, rstd)


@triton.jit
def _rms_backward(X, W, DY, DX, DW_ROWS, RSTD, N, HAS_W: tl.constexpr, BLOCK: tl.constexpr):
    # dx = r·(g − x̂·mean(g·x̂)) with g = γ·dy; each row's dy·x̂ is kept for dγ (summed over the
    # rows afterwards, in float32).
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK)
    mask = cols < N
    x = tl.load(X + row * N + cols, mask=mask, other=0.0).to(tl.float32)
    dy = tl.load(DY + row * N + cols, mask=mask, other=0.0).to(tl.float32)
    rstd = tl.load(RSTD + row)
    xhat = x * rstd
    g = dy
    if HAS_W:
        g = dy * tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
    m = tl.sum(g * xhat, axis=0) / N
    dx = rstd * (g - xhat * m)
    tl.store(DX + row * N + cols, dx.to(DX.dtype.element_ty), mask=mask)
    if HAS_W:
        tl.store(DW_ROWS + row * N + cols, dy * xhat, mask=mask)


class TritonRMSNorm:
    """RMSNorm over the trailing axes the problem names, on the GPU."""

    name = "triton_rms_norm"
    convention = "pytorch"
    ops = ["rms_norm"]

    def __init__(self, dtype=torch.float32):
        self.dtype = dtype
        # The formats it takes: float32 statistics, and bfloat16 data and γ/β when so built.
        self.types = ["float32"] if dtype == torch.float32 else ["float32", "bfloat16"]

    def _rows(self, call, a):
        axes = int(call.op.split("axes=")[1].split(")")[0].split(",")[0]) if "axes=" in call.op else 1
        hidden = int(np.prod(a.shape[a.ndim - axes:]))
        t = torch.from_numpy(np.ascontiguousarray(a)).to("cuda", self.dtype)
        return t.reshape(-1, hidden), hidden

    def _forward(self, call):
        if "weight_offset" in call.op:
            raise bnoracle.Unsupported("Gemma's (1 + w) is not in this kernel")
        x, n = self._rows(call, call.src)
        if x.numel() == 0 or n == 0:
            raise bnoracle.Unsupported("empty rows")
        w = None if call.gamma is None else torch.from_numpy(call.gamma).to("cuda", self.dtype)
        b = None if call.beta is None else torch.from_numpy(call.beta).to("cuda", self.dtype)
        y = torch.empty_like(x)
        rstd = torch.empty(x.shape[0], device="cuda", dtype=torch.float32)
        block = triton.next_power_of_2(n)
        _rms_forward[(x.shape[0],)](x, w if w is not None else x, b if b is not None else x, y,
                                    rstd, n, call.eps, HAS_W=w is not None, BLOCK=block)
        return x, w, y, rstd, n, block

    def forward_training(self, call):
        _, _, y, _, _, _ = self._forward(call)
        return {"dst": y.reshape(call.src.shape)}

    def backward_training(self, call):
        x, w, _, rstd, n, block = self._forward(call)
        dy, _ = self._rows(call, call.diff_dst)
        dx = torch.empty_like(x)
        dw_rows = torch.empty((x.shape[0], n), device="cuda", dtype=torch.float32)
        _rms_backward[(x.shape[0],)](x, w if w is not None else x, dy, dx, dw_rows, rstd, n,
                                     HAS_W=w is not None, BLOCK=block)
        out = {"diff_src": dx.reshape(call.src.shape)}
        if w is not None:
            out["diff_gamma"] = dw_rows.sum(dim=0)
            out["diff_beta"] = dy.float().sum(dim=0)
        return out


if __name__ == "__main__":
    bnoracle.serve.serve(TritonRMSNorm())
