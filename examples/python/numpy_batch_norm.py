"""A batch-norm kernel in NumPy for bnoracle.check (in process) and, run as a script, for
bnoracle check --exec (its own process, through bnoracle.serve): the same class both ways.

    PYTHONPATH=build/ci/python /usr/bin/python3 -c "import bnoracle, numpy_batch_norm as k; print(bnoracle.check(k.NumpyBatchNorm()))"
    build/ci/tools/bnoracle check --exec "/usr/bin/python3 examples/python/numpy_batch_norm.py"

It computes in float64 and rounds once to float32: far inside every bound. NumpyBatchNorm(ddof=1)
normalizes with the unbiased variance, a defect bnoracle catches and names.
"""
import numpy as np

import bnoracle
import bnoracle.serve


class NumpyBatchNorm:
    """Batch norm in float64, rounded to float32 at the end: far inside every bound."""

    name = "numpy_batch_norm"
    convention = "pytorch"
    saves = "mean_invstd"

    def __init__(self, ddof=0):
        self.ddof = ddof  # 1: the unbiased variance in the normalization (a defect)

    @staticmethod
    def _axes(x):
        return (0,) + tuple(range(2, x.ndim))

    @staticmethod
    def _per_channel(v, x):
        return np.asarray(v, np.float64).reshape((1, -1) + (1,) * (x.ndim - 2))

    def forward_training(self, call):
        x = call.src.astype(np.float64)
        count = x.size // x.shape[1] if x.shape[1] else 0
        if count == 0:
            # An empty batch has no statistics: PyTorch leaves the running ones as they were.
            c = x.shape[1]
            out = {"dst": x.astype(np.float32), "save_mean": np.full(c, np.nan, np.float32),
                   "save_stat": np.full(c, np.nan, np.float32)}
            if call.track_running:
                out.update(running_mean=call.running_mean, running_var=call.running_var,
                           num_batches_tracked=call.num_batches_tracked + 1)
            return out
        if count == 1:
            raise bnoracle.Refused("expected more than 1 value per channel when training")
        axes = self._axes(x)
        mean = x.mean(axis=axes)
        var = x.var(axis=axes, ddof=self.ddof)
        r = 1.0 / np.sqrt(var + call.eps)
        y = (x - self._per_channel(mean, x)) * self._per_channel(r, x)
        if call.gamma is not None:
            y = y * self._per_channel(call.gamma, x) + self._per_channel(call.beta, x)
        out = {"dst": y.astype(np.float32), "save_mean": mean.astype(np.float32),
               "save_stat": r.astype(np.float32)}
        if call.track_running:
            f = call.momentum if call.momentum is not None else 1.0 / (call.num_batches_tracked + 1)
            unbiased = x.var(axis=axes, ddof=1)
            out["running_mean"] = ((1 - f) * call.running_mean + f * mean).astype(np.float32)
            out["running_var"] = ((1 - f) * call.running_var + f * unbiased).astype(np.float32)
            out["num_batches_tracked"] = call.num_batches_tracked + 1
        return out

    def forward_inference(self, call):
        x = call.src.astype(np.float64)
        r = 1.0 / np.sqrt(call.running_var.astype(np.float64) + call.eps)
        y = (x - self._per_channel(call.running_mean, x)) * self._per_channel(r, x)
        if call.gamma is not None:
            y = y * self._per_channel(call.gamma, x) + self._per_channel(call.beta, x)
        return {"dst": y.astype(np.float32)}


if __name__ == "__main__":
    bnoracle.serve.serve(NumpyBatchNorm())
