"""bnoracle.check: the conformance suite in process against Python kernels."""
import os
import pathlib
import sys

import numpy as np

import bnoracle

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "examples" / "python"))
from numpy_batch_norm import NumpyBatchNorm  # noqa: E402  (the example kernel)


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
