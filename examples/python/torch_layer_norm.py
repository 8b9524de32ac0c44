"""PyTorch's own CPU LayerNorm (torch.nn.functional.layer_norm and its autograd backward) as a
kernel for bnoracle.check, in float32 or, with dtype=torch.bfloat16, in bfloat16 — the check of
the kernel a model actually runs.

    PYTHONPATH=build/ci/python /usr/bin/python3 -c "import bnoracle, torch_layer_norm as k; print(bnoracle.check(k.TorchLayerNorm(), op='layer_norm'))"

bnoracle.check runs the calls in a worker process forked from the test process. PyTorch's CPU
thread pool (OpenMP) does not survive fork: a worker that inherits a started pool can hang in its
first parallel region. The kernel therefore runs PyTorch on one thread (torch.set_num_threads(1)
in the constructor, before any call); a GPU kernel must not be forked at all (docs/python.md,
"GPU kernels").
"""
import numpy as np
import torch

import bnoracle


class TorchLayerNorm:
    """torch.nn.functional.layer_norm over the trailing axes the problem names."""

    name = "torch_layer_norm"
    convention = "pytorch"
    ops = ["layer_norm"]
    saves = "mean_invstd"

    def __init__(self, dtype=torch.float32):
        torch.set_num_threads(1)
        self.dtype = dtype
        # The formats it takes: float32 statistics, and bfloat16 data and γ/β when so built.
        self.types = ["float32"] if dtype == torch.float32 else ["float32", "bfloat16"]

    def _tensor(self, a):
        return None if a is None else torch.from_numpy(np.array(a)).to(self.dtype)

    def _shape(self, call, x):
        axes = int(call.op.split("axes=")[1].split(")")[0].split(",")[0]) if "axes=" in call.op else 1
        return tuple(x.shape[x.ndim - axes:])

    def forward_training(self, call):
        x = self._tensor(call.src)
        shape = self._shape(call, x)
        w = self._tensor(call.gamma)
        b = self._tensor(call.beta)
        y = torch.nn.functional.layer_norm(x, shape, w.reshape(shape) if w is not None else None,
                                           b.reshape(shape) if b is not None else None, call.eps)
        # The statistics LayerNorm saves for its backward, as PyTorch computes them.
        dims = tuple(range(x.ndim - len(shape), x.ndim))
        xf = x.float()
        mean = xf.mean(dim=dims)
        invstd = torch.rsqrt(xf.var(dim=dims, unbiased=False) + call.eps)
        return {"dst": y, "save_mean": mean.reshape(-1), "save_stat": invstd.reshape(-1)}

    def backward_training(self, call):
        x = self._tensor(call.src).requires_grad_(True)
        shape = self._shape(call, x)
        params = []
        w = b = None
        if call.gamma is not None:
            w = self._tensor(call.gamma).reshape(shape).requires_grad_(True)
            b = self._tensor(call.beta).reshape(shape).requires_grad_(True)
            params = [w, b]
        y = torch.nn.functional.layer_norm(x, shape, w, b, call.eps)
        grads = torch.autograd.grad(y, [x] + params, self._tensor(call.diff_dst))
        out = {"diff_src": grads[0]}
        if params:
            out["diff_gamma"] = grads[1].reshape(-1)
            out["diff_beta"] = grads[2].reshape(-1)
        return out
