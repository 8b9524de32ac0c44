"""The pytest plugin: options, the seed in the header and in failures, the fixture's level."""
from bnoracle.pytest_plugin import Session

pytest_plugins = ["pytester"]

TESTS = """
import numpy as np

def test_golden_passes(bnoracle):
    x = bnoracle.rng.normal(size=(4, 3)).astype(np.float32)
    ref = bnoracle.reference("batch_norm", "forward_training", x)
    verdict = bnoracle.assert_conformant("batch_norm", "forward_training", x,
                                         {"dst": ref.golden("dst")})
    assert verdict.level == "lenient"

def test_identity_fails(bnoracle):
    x = bnoracle.rng.normal(size=(4, 3)).astype(np.float32)
    bnoracle.assert_conformant("batch_norm", "forward_training", x, {"dst": x})
"""


def test_the_fixture_judges_at_the_options_level_and_prints_the_seed(pytester):
    pytester.makepyfile(TESTS)
    result = pytester.runpytest("-p", "bnoracle.pytest_plugin", "--bnoracle-level", "lenient",
                                "--bnoracle-seed", "7")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["bnoracle: level lenient, seed 7*",
                                 "*FAIL at lenient*", "*--bnoracle-seed 7 reproduces*"])


CHECKS = """
import sys
sys.path.insert(0, %r)
from numpy_batch_norm import NumpyBatchNorm

def test_correct_kernel(bnoracle):
    bnoracle.check(NumpyBatchNorm(), filter="exact/basic/", properties=False)

def test_unbiased_kernel(bnoracle):
    bnoracle.check(NumpyBatchNorm(ddof=1), filter="exact/basic/", properties=False)
"""


def test_the_fixtures_check_names_the_failed_cases_and_the_diagnosis(pytester):
    import pathlib
    examples = pathlib.Path(__file__).resolve().parents[2] / "examples" / "python"
    pytester.makepyfile(CHECKS % str(examples))
    result = pytester.runpytest("-p", "bnoracle.pytest_plugin", "--bnoracle-level", "lenient",
                                "--bnoracle-seed", "3")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*NOT CONFORMANT at lenient (seed 3)*",
                                 "*exact/basic/nchw_4x3x5x5 forward_training*",
                                 "*diagnosis: most likely*[variance_estimator]*"])


def test_a_seed_gives_the_same_data_to_the_same_test():
    a = Session("standard", 7, "t.py::test_x").rng.normal(size=5)
    b = Session("standard", 7, "t.py::test_x").rng.normal(size=5)
    c = Session("standard", 7, "t.py::test_y").rng.normal(size=5)
    assert (a == b).all() and not (a == c).all()


SUITE = """
import sys
sys.path.insert(0, %r)
from numpy_batch_norm import NumpyBatchNorm
from bnoracle.pytest_plugin import conformance_suite

test_correct = conformance_suite(NumpyBatchNorm, property_cases=5)
test_unbiased = conformance_suite(lambda: NumpyBatchNorm(ddof=1), property_cases=5)
"""


def _examples():
    import pathlib
    return str(pathlib.Path(__file__).resolve().parents[2] / "examples" / "python")


def test_conformance_suite_makes_one_item_per_case_and_property(pytester):
    import bnoracle
    pytester.makepyfile(SUITE % _examples())
    expected = len(bnoracle._bnoracle.list_items("batch_norm", True, True))
    collected = pytester.runpytest("-p", "bnoracle.pytest_plugin", "--collect-only", "-q")
    collected.stdout.fnmatch_lines([f"{2 * expected} tests collected*"])
    collected.stdout.fnmatch_lines(["*test_correct[[]exact/basic/nchw_4x3x5x5[]]*",
                                    "*test_correct[[]property/reproducibility[]]*"])
    # The unbiased variance fails in its own items, named; the correct kernel passes them.
    result = pytester.runpytest("-p", "bnoracle.pytest_plugin", "--bnoracle-seed", "2",
                                "-k", "exact/basic/nchw_4x3x5x5")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*FAILED*test_unbiased[[]exact/basic/nchw_4x3x5x5[]]*"])
    result = pytester.runpytest("-p", "bnoracle.pytest_plugin", "-k", "test_correct and property/reproducibility")
    result.assert_outcomes(passed=1)


SEEDS = """
import pathlib

def test_one(bnoracle):
    pathlib.Path("seed_one").write_text(str(bnoracle.seed))

def test_two(bnoracle):
    pathlib.Path("seed_two").write_text(str(bnoracle.seed))
"""


def test_xdist_workers_use_the_seed_the_controller_printed(pytester):
    import pytest
    pytest.importorskip("xdist")
    pytester.makepyfile(SEEDS)
    result = pytester.runpytest("-p", "bnoracle.pytest_plugin", "-n", "2")
    result.assert_outcomes(passed=2)
    header = [line for line in result.outlines if line.startswith("bnoracle: level")]
    assert header, result.outlines
    seed = header[0].split("seed ")[1].split(" ")[0]
    assert (pytester.path / "seed_one").read_text() == seed
    assert (pytester.path / "seed_two").read_text() == seed
