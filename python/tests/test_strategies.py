"""bnoracle.strategies: values of their format, bounded shapes, and problems that find bugs."""
import numpy as np
from hypothesis import HealthCheck, find, given, settings

import bnoracle
from bnoracle.strategies import floats_by_bits, problems, shapes

# Derandomized: CI sees the same examples on every run (a failure reproduces as it is).
FAST = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(floats_by_bits("float16", -30, 30))
def test_float16_draws_are_float16_values(v):
    assert np.isfinite(v)
    assert float(np.float32(np.float16(v))) == v


@FAST
@given(floats_by_bits("bfloat16"))
def test_bfloat16_draws_have_eight_significant_bits(v):
    bits = np.array([v], dtype=np.float32).view(np.uint32)[0]
    assert bits & 0xFFFF == 0


@FAST
@given(shapes(max_elements=512))
def test_shapes_are_bounded_and_trainable(shape):
    assert 2 <= len(shape) <= 4
    assert int(np.prod(shape)) <= 512
    assert int(np.prod(shape)) // shape[1] >= 2


@FAST
@given(problems(max_elements=512))
def test_the_reference_itself_passes_on_every_drawn_problem(p):
    ref = bnoracle.reference("batch_norm", "forward_training", p.src, **p.inputs)
    bnoracle.assert_conformant("batch_norm", "forward_training", p.src,
                               {"dst": ref.golden("dst")}, level="strict", **p.inputs)


def one_pass_kernel(p):
    """Batch norm with the variance E[x^2] - E[x]^2 in float32 (a defect of the catalog)."""
    x = p.src
    axes = (0,) + tuple(range(2, x.ndim))
    n = np.float32(x.size // x.shape[1])
    mean = x.sum(axis=axes, keepdims=True, dtype=np.float32) / n
    var = np.maximum((x * x).sum(axis=axes, keepdims=True, dtype=np.float32) / n - mean * mean,
                     np.float32(0))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    with np.errstate(all="ignore"):
        y = p.gamma.reshape(shape) * (x - mean) / np.sqrt(var + np.float32(p.eps))
        return (y + p.beta.reshape(shape)).astype(np.float32)


def test_the_problems_find_a_one_pass_variance():
    def fails(p):
        y = one_pass_kernel(p)
        return not bnoracle.judge("batch_norm", "forward_training", p.src, {"dst": y},
                                  level="lenient", **p.inputs)
    found = find(problems(max_elements=256), fails,
                 settings=settings(max_examples=300, deadline=None, database=None, derandomize=True,
                                   suppress_health_check=list(HealthCheck)))
    assert found.src.size <= 256
