"""The Python package: goldens against NumPy in float64, verdicts on NumPy kernels, messages."""
import numpy as np
import pytest

import bnoracle

RNG = np.random.default_rng(12345)
X = RNG.normal(0.5, 2.0, size=(4, 3, 5, 5)).astype(np.float32)
GAMMA = np.array([1.5, -0.75, 2.0], dtype=np.float32)
BETA = np.array([0.25, -1.0, 0.5], dtype=np.float32)
EPS = 1e-5


def batch_norm_float64(x, gamma, beta, eps, unbiased=False):
    """The textbook batch norm in float64 (independent of bnoracle's exact arithmetic)."""
    x = x.astype(np.float64)
    axes = (0,) + tuple(range(2, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True, ddof=1 if unbiased else 0)
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return gamma.reshape(shape) * (x - mean) / np.sqrt(var + eps) + beta.reshape(shape)


def batch_norm_float32(x, gamma, beta, eps, unbiased=False):
    """A hand-written float32 kernel: two-pass statistics, then the normalization."""
    axes = (0,) + tuple(range(2, x.ndim))
    mean = x.mean(axis=axes, keepdims=True, dtype=np.float32)
    var = ((x - mean) ** 2).sum(axis=axes, keepdims=True, dtype=np.float32)
    count = np.float32(x.size // x.shape[1] - (1 if unbiased else 0))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    r = np.float32(1) / np.sqrt(var / count + np.float32(eps))
    return (gamma.reshape(shape) * ((x - mean) * r) + beta.reshape(shape)).astype(np.float32)


def test_golden_is_the_float64_result_rounded():
    ref = bnoracle.reference("batch_norm", "forward_training", X, gamma=GAMMA, beta=BETA, eps=EPS)
    golden = ref.golden("dst")
    assert golden.shape == X.shape and golden.dtype == np.float32
    exact = batch_norm_float64(X, GAMMA, BETA, EPS)
    # float64 is within 2^-40 relative of the exact value: the golden, the exact value rounded
    # once to float32, lies within half an ulp of it (plus that slack).
    ulp = np.spacing(np.abs(golden))
    assert np.all(np.abs(golden.astype(np.float64) - exact) <= 0.5 * ulp + np.abs(exact) * 2**-40)
    assert "dst" in ref.outputs and "running_var" not in ref.outputs  # not tracked here


def test_exact_values_and_bounds_have_the_output_shape():
    ref = bnoracle.reference("batch_norm", "forward_training", X, gamma=GAMMA, beta=BETA,
                             running_mean=np.zeros(3), running_var=np.ones(3))
    assert ref.bound("dst").shape == X.shape
    assert np.all(ref.bound("dst", "strict") <= ref.bound("dst", "lenient"))
    exact_mean = ref.exact("mean")
    assert len(exact_mean) == 3
    mean = X.astype(np.float64).mean(axis=(0, 2, 3))
    assert np.allclose([float(v) for v in exact_mean], mean, rtol=1e-12)
    assert ref.golden("running_var").shape == (3,)


def test_a_correct_numpy_kernel_passes():
    y = batch_norm_float32(X, GAMMA, BETA, EPS)
    verdict = bnoracle.judge("batch_norm", "forward_training", X, {"dst": y}, level="lenient",
                             gamma=GAMMA, beta=BETA, eps=EPS)
    assert verdict, str(verdict)
    assert verdict.best_level in bnoracle.LEVELS
    bnoracle.assert_conformant("batch_norm", "forward_training", X, {"dst": y}, level="lenient",
                               gamma=GAMMA, beta=BETA, eps=EPS)


def test_the_unbiased_variance_fails_with_the_output_and_element_named():
    y = batch_norm_float32(X, GAMMA, BETA, EPS, unbiased=True)
    with pytest.raises(AssertionError) as failure:
        bnoracle.assert_conformant("batch_norm", "forward_training", X, {"dst": y},
                                   level="lenient", gamma=GAMMA, beta=BETA, eps=EPS)
    message = str(failure.value)
    assert message.startswith("FAIL at lenient")
    assert "dst[n=" in message and "got=" in message and "exp=" in message
    assert "0x" in message  # hex next to decimal
    assert "repro: bnoracle.judge('batch_norm', 'forward_training'" in message


def test_layer_norm_of_a_numpy_kernel():
    x = RNG.normal(size=(6, 16)).astype(np.float32)
    w = RNG.normal(size=16).astype(np.float32)
    b = RNG.normal(size=16).astype(np.float32)
    mean = x.mean(axis=1, keepdims=True, dtype=np.float32)
    var = ((x - mean) ** 2).mean(axis=1, keepdims=True, dtype=np.float32)
    y = ((x - mean) / np.sqrt(var + np.float32(EPS)) * w + b).astype(np.float32)
    verdict = bnoracle.judge("layer_norm(axes=1)", "forward_training", x, {"dst": y},
                             level="lenient", gamma=w, beta=b, eps=EPS)
    assert verdict, str(verdict)
    # x.var()'s unbiased default in the same kernel is caught.
    bad = ((x - mean) / np.sqrt(x.var(axis=1, ddof=1, keepdims=True) + EPS) * w + b)
    assert not bnoracle.judge("layer_norm(axes=1)", "forward_training", x,
                              {"dst": bad.astype(np.float32)}, level="lenient", gamma=w, beta=b,
                              eps=EPS)


def test_float16_data_is_judged_against_float16_goldens():
    x16 = X.astype(np.float16)
    ref = bnoracle.reference("batch_norm", "forward_training", x16, gamma=GAMMA, beta=BETA)
    golden = ref.golden("dst")
    assert np.array_equal(golden, golden.astype(np.float16).astype(np.float32))
    assert "float16" in ref.problem


def test_misuse_gets_clear_errors():
    with pytest.raises(ValueError, match="mode"):
        bnoracle.reference("batch_norm", "sideways", X)
    with pytest.raises(ValueError, match="spatial"):
        bnoracle.reference("batch_norm", "forward_training", np.zeros(5, dtype=np.float32))
    with pytest.raises(KeyError, match="outputs:"):
        bnoracle.judge("batch_norm", "forward_training", X, {"diff_src": X})
    with pytest.raises(ValueError, match="values"):
        bnoracle.judge("batch_norm", "forward_training", X, {"dst": X[:1]})
    with pytest.raises(ValueError, match="level"):
        bnoracle.judge("batch_norm", "forward_training", X, {"dst": X}, level="loose")
    # One value per channel in training: PyTorch refuses it, and so does the reference.
    one = np.ones((1, 3), dtype=np.float32)
    ref = bnoracle.reference("batch_norm", "forward_training", one, running_mean=np.zeros(3),
                             running_var=np.ones(3))
    assert "expected more than 1 value" in ref.refusal
    with pytest.raises(ValueError, match="refuses"):
        ref.golden("dst")


# ---- tensors of other libraries ---------------------------------------------------------------

def _bfloat16_values(a):
    """float32 values rounded to bfloat16 (nearest even), held in float32: an independent
    rounding by the bits."""
    bits = np.asarray(a, np.float32).view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return rounded.astype(np.uint32).view(np.float32)


def test_pytorch_tensors_are_read_as_arrays():
    torch = pytest.importorskip("torch")
    x = torch.tensor(X, requires_grad=True)  # requires_grad: numpy() alone would refuse it
    from_tensor = bnoracle.reference("batch_norm", "forward_training", x,
                                     gamma=torch.tensor(GAMMA), beta=torch.tensor(BETA), eps=EPS)
    from_array = bnoracle.reference("batch_norm", "forward_training", X, gamma=GAMMA, beta=BETA,
                                    eps=EPS)
    assert np.array_equal(from_tensor.golden("dst"), from_array.golden("dst"))
    y = torch.tensor(from_array.golden("dst"), requires_grad=True)
    assert bnoracle.judge("batch_norm", "forward_training", x, {"dst": y}, gamma=GAMMA,
                          beta=BETA, eps=EPS)


def test_bfloat16_tensors_widen_exactly_and_name_the_data_type():
    torch = pytest.importorskip("torch")
    xb = torch.tensor(X).to(torch.bfloat16)
    held = _bfloat16_values(X)
    assert np.array_equal(xb.float().numpy(), held)
    ref = bnoracle.reference("layer_norm", "forward_training", xb, eps=EPS)
    assert "data=bfloat16" in ref.problem
    same = bnoracle.reference("layer_norm", "forward_training", held, eps=EPS,
                              types="data=bfloat16")
    assert np.array_equal(ref.golden("dst"), same.golden("dst"))
    # A bfloat16 result tensor is judged: the goldens themselves, as bfloat16, pass.
    got = torch.tensor(ref.golden("dst")).to(torch.bfloat16)
    assert bnoracle.judge("layer_norm", "forward_training", xb, {"dst": got}, eps=EPS)


def test_objects_speaking_dlpack_are_read():
    torch = pytest.importorskip("torch")

    class OnlyDlpack:
        """A tensor of some other library: all it offers is DLPack."""

        def __init__(self, t):
            self._t = t

        def __dlpack__(self, stream=None):
            return self._t.__dlpack__()

        def __dlpack_device__(self):
            return self._t.__dlpack_device__()

    ref = bnoracle.reference("batch_norm", "forward_training", OnlyDlpack(torch.tensor(X)),
                             gamma=GAMMA, beta=BETA, eps=EPS)
    assert np.array_equal(ref.golden("dst"),
                          bnoracle.reference("batch_norm", "forward_training", X, gamma=GAMMA,
                                             beta=BETA, eps=EPS).golden("dst"))
