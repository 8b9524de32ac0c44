"""bnoracle.check: the conformance suite in process against Python kernels."""
import os

import numpy as np

import bnoracle


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
        count = x.size // x.shape[1]
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


def test_a_correct_kernel_is_conformant():
    report = bnoracle.check(NumpyBatchNorm(), filter="exact/", property_cases=5)
    assert report.verdict == "CONFORMANT", report.text
    assert report.exit_code == 0 and report.failed == 0 and report.passed > 0
    assert report.json.lstrip().startswith("{") and "<testsuites" in report.junit
    assert "<html" in report.html


def test_the_unbiased_variance_is_caught_and_diagnosed():
    report = bnoracle.check(NumpyBatchNorm(ddof=1), filter="exact/", properties=False,
                            level="lenient")
    assert not report and report.exit_code == 1
    assert report.diagnosis and "[variance_estimator]" in report.diagnosis[0], report.diagnosis
    assert "diagnosis: most likely" in str(report)


class Crashing(NumpyBatchNorm):
    name = "crashing"

    def forward_training(self, call):
        os.abort()


def test_a_crashing_kernel_is_a_fault_not_the_end_of_the_test_process():
    report = bnoracle.check(Crashing(), filter="exact/basic/", properties=False)
    assert report.verdict == "KERNEL FAULT" and report.exit_code == 3
    assert "SIGABRT" in report.text


class WrongSize(NumpyBatchNorm):
    name = "wrong_size"

    def forward_inference(self, call):
        return {"dst": np.zeros(3, np.float32)}


def test_a_wrong_output_size_is_named():
    report = bnoracle.check(WrongSize(), filter="exact/basic/", properties=False)
    assert not report
    assert "'dst': expected" in report.text
