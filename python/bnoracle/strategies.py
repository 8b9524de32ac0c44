"""Hypothesis strategies for bnoracle's adversarial problems, for properties of your own.

    from hypothesis import given
    import bnoracle
    from bnoracle.strategies import problems

    @given(problems())
    def test_my_batch_norm(p):
        y = my_batch_norm(p.src, p.gamma, p.beta, p.eps)
        bnoracle.assert_conformant("batch_norm", "forward_training", p.src, {"dst": y},
                                   level="lenient", **p.inputs)

The recipes are those of bnoracle's own generators (docs/properties.md): values drawn by bit
pattern over a range of exponents (so that tiny, huge and subnormal values come as often as
ordinary ones), channels offset by a power of ten against a small spread (where a one-pass
variance cancels), near-constant channels (a spread of a few ulps, where ε decides), and odd
extents (1, 3, 5, 7, 17, 257: where vector tails and blocked loops go wrong).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from hypothesis import strategies as st

__all__ = ["floats_by_bits", "extents", "shapes", "channel_recipes", "Problem", "problems"]

# Extents that break vectorized and blocked loops, drawn more often than others.
ODD_EXTENTS = (1, 2, 3, 5, 7, 17, 31, 33, 65, 257)


def floats_by_bits(fmt="float32", min_exponent=-20, max_exponent=20, allow_zero=True):
    """Finite values of `fmt` ("float32", "float16" or "bfloat16", carried as float32) drawn by
    sign, exponent and significand bits, the exponent uniform in [min_exponent, max_exponent]
    (clamped to the format's range; the least exponent gives subnormals)."""
    bits = {"float32": (8, 23, 127), "bfloat16": (8, 7, 127), "float16": (5, 10, 15)}
    if fmt not in bits:
        raise ValueError(f"fmt: {fmt!r} is not float32, float16 or bfloat16")
    exponent_bits, significand_bits, bias = bits[fmt]
    low = max(min_exponent, 1 - bias)
    high = min(max_exponent, bias)

    @st.composite
    def draw(d):
        sign = -1.0 if d(st.booleans()) else 1.0
        m = d(st.integers(0, (1 << significand_bits) - 1))
        e = d(st.integers(low - (1 if low == 1 - bias else 0), high))
        if e < 1 - bias:  # the subnormal binade
            value = m * 2.0 ** (1 - bias - significand_bits)
        else:
            value = (1.0 + m / (1 << significand_bits)) * 2.0 ** e
        if value == 0.0 and not allow_zero:
            value = 2.0 ** e
        return float(np.float32(sign * value))

    return draw()


def extents(max_extent=257):
    """One extent: an odd or small one often, any in [1, max_extent] otherwise."""
    odd = [e for e in ODD_EXTENTS if e <= max_extent]
    return st.one_of(st.sampled_from(odd), st.integers(1, max_extent))


@st.composite
def shapes(draw, min_spatial_rank=0, max_spatial_rank=2, max_elements=4096, min_per_channel=2):
    """A logical shape (N, C, spatial...) with at most `max_elements` elements and at least
    `min_per_channel` elements per channel (2: training is defined for every convention)."""
    rank = draw(st.integers(min_spatial_rank, max_spatial_rank))
    for _ in range(100):
        dims = [draw(extents(17)), draw(extents(17))] + [draw(extents(33)) for _ in range(rank)]
        count = int(np.prod(dims))
        per_channel = count // dims[1]
        if count <= max_elements and per_channel >= min_per_channel:
            return tuple(dims)
    return (2, 1) + (1,) * rank


@st.composite
def channel_recipes(draw, count, fmt="float32"):
    """The values of one channel: plain draws by bit pattern, an offset 10^k with a small
    spread, or a near-constant channel (a base value and a few ulps around it)."""
    kind = draw(st.sampled_from(["bits", "offset", "near_constant"]))
    if kind == "bits":
        return [draw(floats_by_bits(fmt)) for _ in range(count)]
    if kind == "offset":
        k = draw(st.integers(-3, 6))
        sign = draw(st.sampled_from([-1.0, 1.0]))
        spread = draw(st.sampled_from([1e-3, 1e-1, 1.0]))
        values = [sign * 10.0 ** k + spread * draw(st.floats(-1, 1)) for _ in range(count)]
    else:
        base = draw(floats_by_bits(fmt, -4, 8, allow_zero=False))
        ulp = float(np.spacing(np.float32(base)))
        values = [base + ulp * draw(st.integers(-3, 3)) for _ in range(count)]
    return [float(np.float32(v)) for v in values]


@dataclass
class Problem:
    """A drawn problem: the tensors in logical order, and `inputs`, the keyword arguments that
    bnoracle.reference and bnoracle.judge take besides src."""

    src: np.ndarray
    gamma: np.ndarray
    beta: np.ndarray
    eps: float
    inputs: dict = field(default_factory=dict)


@st.composite
def problems(draw, max_elements=4096, max_spatial_rank=2, affine=True):
    """A batch-norm training problem: a shape from shapes(), each channel from
    channel_recipes(), γ and β by bit pattern, ε from 0 to 0.5 (1e-5 most often)."""
    shape = draw(shapes(max_spatial_rank=max_spatial_rank, max_elements=max_elements))
    n, c = shape[0], shape[1]
    per_channel = int(np.prod(shape)) // c
    src = np.empty(shape, dtype=np.float32)
    moved = np.moveaxis(src, 1, 0)  # (C, N, spatial...)
    for ch in range(c):
        moved[ch] = np.array(draw(channel_recipes(per_channel)), dtype=np.float32).reshape(
            moved[ch].shape)
    if affine:
        gamma = np.array([draw(floats_by_bits("float32", -6, 6)) for _ in range(c)], np.float32)
        beta = np.array([draw(floats_by_bits("float32", -6, 6)) for _ in range(c)], np.float32)
    else:
        gamma, beta = np.ones(c, np.float32), np.zeros(c, np.float32)
    eps = draw(st.sampled_from([1e-5, 1e-5, 1e-3, 0.0, 0.5]))
    return Problem(src, gamma, beta, eps, {"gamma": gamma, "beta": beta, "eps": eps})
