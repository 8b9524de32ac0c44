"""bnoracle's pytest plugin: a `bnoracle` fixture and the options that set its defaults.

Enable it with `pytest -p bnoracle.pytest_plugin`, or `pytest_plugins = ["bnoracle.pytest_plugin"]`
in a conftest.py. Then

    def test_my_layer_norm(bnoracle):
        bnoracle.assert_conformant("layer_norm(axes=1)", "forward_training", x, {"dst": y},
                                   gamma=w, beta=b)

judges at the level `--bnoracle-level` gives (standard by default), and
`bnoracle.rng` is a NumPy generator seeded by `--bnoracle-seed` (random by default), so that a
test drawing its own data reproduces: the seed is printed in the session header and in every
failure.
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
        seed = getattr(config, "_bnoracle_seed", None)
        if seed is None:
            seed = random.SystemRandom().randrange(2**32)
            config._bnoracle_seed = seed
    return seed


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
