"""bnoracle's pytest plugin: a `bnoracle` fixture and the options that set its defaults.

Enable it with `pytest -p bnoracle.pytest_plugin`, or `pytest_plugins = ["bnoracle.pytest_plugin"]`
in a conftest.py. Then

    def test_my_layer_norm(bnoracle):
        bnoracle.assert_conformant("layer_norm(axes=1)", "forward_training", x, {"dst": y},
                                   gamma=w, beta=b)

judges at the level `--bnoracle-level` gives (standard by default), and
`bnoracle.rng` is a NumPy generator seeded by `--bnoracle-seed` (random by default), so that a
test drawing its own data reproduces: the seed is printed in the session header and in every
failure. `conformance_suite` makes a kernel's conformance check one test item per case and per
property. Under pytest-xdist every worker uses the controller's seed.
"""

from __future__ import annotations

import random
import zlib

import numpy as np
import pytest

import bnoracle as _bnoracle

def pytest_addoption(parser):
    group = parser.getgroup("bnoracle")
    group.addoption("--bnoracle-level", choices=_bnoracle.LEVELS, default="standard",
                    help="the accuracy level bnoracle judges at (default: standard)")
    group.addoption("--bnoracle-seed", type=int, default=None,
                    help="the seed of the bnoracle fixture's random generator (default: random, "
                         "printed in the header)")


def _seed(config):
    seed = config.getoption("--bnoracle-seed")
    if seed is None:
        # Under pytest-xdist every worker uses the seed the controller drew (and printed).
        seed = getattr(config, "workerinput", {}).get("bnoracle_seed")
    if seed is None:
        seed = getattr(config, "_bnoracle_seed", None)
        if seed is None:
            seed = random.SystemRandom().randrange(2**32)
            config._bnoracle_seed = seed
    return seed


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
    """pytest-xdist: hands the session's seed to each worker it starts."""
    node.workerinput["bnoracle_seed"] = _seed(node.config)


def pytest_report_header(config):
    return (f"bnoracle: level {config.getoption('--bnoracle-level')}, "
            f"seed {_seed(config)} (--bnoracle-seed {_seed(config)} reproduces)")


class Session:
    """What the fixture gives a test: judge and assert_conformant at the session's level, and a
    random generator seeded with the session's seed (reseeded for every test)."""

    def __init__(self, level, seed, test_name):
        self.level = level
        self.seed = seed
        # The test's name enters the seed through a stable hash (str's hash changes per process).
        self.rng = np.random.default_rng([seed, zlib.crc32(test_name.encode())])

    def reference(self, op, mode, src, **inputs):
        return _bnoracle.reference(op, mode, src, **inputs)

    def judge(self, op, mode, src, outputs, level=None, **inputs):
        return _bnoracle.judge(op, mode, src, outputs, level=level or self.level, **inputs)

    def check(self, kernel, level=None, **options):
        """bnoracle.check at the session's level and seed; raises AssertionError naming every
        failed case and property, with the diagnosis, when the kernel is not conformant."""
        report = _bnoracle.check(kernel, level=level or self.level, seed=self.seed, **options)
        return self._conformant(report, level)

    def _conformant(self, report, level=None):
        """The report when CONFORMANT; else AssertionError naming every failure."""
        if not report:
            import json
            cases = json.loads(report.json)["cases"]
            failed = [f"{c['case']} {c['mode']}: {c['reason'].splitlines()[0] if c['reason'] else ''}"
                      for c in cases if c["verdict"] in ("FAIL", "FAULT")]
            shown = failed[:20] + ([f"... and {len(failed) - 20} more"] if len(failed) > 20 else [])
            raise AssertionError(
                f"{report.verdict} at {level or self.level} (seed {self.seed}): "
                f"{report.failed} failed, {report.faults} faults\n  "
                + "\n  ".join(shown + [f"diagnosis: {d}" for d in report.diagnosis])
                + f"\n  (pytest --bnoracle-seed {self.seed} reproduces)")
        return report

    def assert_conformant(self, op, mode, src, outputs, level=None, **inputs):
        verdict = self.judge(op, mode, src, outputs, level=level, **inputs)
        if not verdict:
            raise AssertionError(f"{verdict}\n  (pytest --bnoracle-seed {self.seed} reproduces "
                                 "the fixture's random data)")
        return verdict


@pytest.fixture
def bnoracle(request):
    """bnoracle's judge at the session's level, with a seeded random generator."""
    config = request.config
    return Session(config.getoption("--bnoracle-level"), _seed(config), request.node.nodeid)


def conformance_suite(kernel_factory, op=None, catalog=True, properties=True, **options):
    """A pytest test function that runs bnoracle's suite against `kernel_factory()` as one test
    item per catalog case and per property, so that pytest lists, selects (-k) and reports each
    one, and pytest-xdist spreads them over its workers:

        from bnoracle.pytest_plugin import conformance_suite
        test_my_layer_norm = conformance_suite(MyLayerNorm, op="layer_norm")

    The items are the catalog cases and properties of `op`, or of every op in the kernel's `ops`
    attribute (["batch_norm"] when it has none); each item calls the `bnoracle` fixture's
    check() with the factory's kernel and `options` (level, types, property_cases, ...),
    restricted to that case or property. A kernel that does not provide a case's mode is
    skipped in it, as in check()."""
    ops = [op] if op else list(getattr(kernel_factory, "ops", ["batch_norm"]))
    names = []
    for o in ops:
        names += [n for n in _bnoracle._bnoracle.list_items(o, catalog, properties)
                  if n not in names]

    @pytest.mark.parametrize("bnoracle_item", names)
    def test(bnoracle, bnoracle_item):
        is_property = bnoracle_item.startswith("property/")
        # The name followed by '*' is a glob over whole names: this case or property alone
        # (no catalog name is a prefix of another).
        level = options.get("level") or bnoracle.level
        rest = {k: v for k, v in options.items() if k != "level"}
        report = _bnoracle.check(kernel_factory(), level=level, seed=bnoracle.seed, op=op,
                                 catalog=not is_property, properties=is_property,
                                 filter=bnoracle_item + "*", **rest)
        if report.passed == 0 and report.failed == 0 and report.faults == 0:
            pytest.skip(f"{bnoracle_item}: nothing judged (the kernel provides none of its "
                        "modes, ops or data types)")
        bnoracle._conformant(report, level)

    return test
