# Enables bnoracle's pytest plugin (the `bnoracle` fixture, --bnoracle-level, --bnoracle-seed) for
# the examples, and lets them import the example kernels beside this file.
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parent))
pytest_plugins = ["bnoracle.pytest_plugin"]
