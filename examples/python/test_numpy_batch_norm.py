"""pytest examples/python: the NumPy kernel of numpy_batch_norm.py through bnoracle's pytest
fixture (conftest.py enables the plugin). The correct kernel passes; normalizing with the
unbiased variance — a one-line defect — fails with a message naming the output and the element.
"""
import pytest

from numpy_batch_norm import NumpyBatchNorm


def test_the_kernel_is_conformant(bnoracle):
    bnoracle.check(NumpyBatchNorm(), filter="exact/", property_cases=10)


def test_the_unbiased_variance_is_caught(bnoracle):
    with pytest.raises(AssertionError) as failure:
        bnoracle.check(NumpyBatchNorm(ddof=1), filter="exact/basic/", properties=False)
    message = str(failure.value)
    assert "exact/basic/nchw_4x3x5x5 forward_training: dst[n=" in message
    assert "[variance_estimator]" in message
