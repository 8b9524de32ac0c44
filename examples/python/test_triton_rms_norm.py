"""pytest examples/python: the Triton RMSNorm of triton_rms_norm.py, in the test process
(isolate=False: CUDA does not survive fork). Skipped where Triton or a CUDA GPU is missing;
docs/python.md, "GPU kernels", says what to run on a machine that has one."""
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("triton")
if not torch.cuda.is_available():
    pytest.skip("no CUDA GPU", allow_module_level=True)

from triton_rms_norm import TritonRMSNorm  # noqa: E402  (after the skips)


def test_triton_rms_norm_is_conformant(bnoracle):
    bnoracle.check(TritonRMSNorm(), op="rms_norm", isolate=False, property_cases=10)


def test_triton_rms_norm_in_bfloat16(bnoracle):
    bnoracle.check(TritonRMSNorm(torch.bfloat16), op="rms_norm", types="bf16_weights",
                   isolate=False, property_cases=10)
