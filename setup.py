"""Builds the Python package bnoracle with CMake for `pip install --no-build-isolation .`.

The extension is the same one the CMake build makes (python/CMakeLists.txt): setup.py configures
a build directory (build/pip, Release, without tests and benchmarks), builds the target
bnoracle_python for the interpreter that runs pip, and copies the package it assembles
(<build>/python/bnoracle: the extension and the package's Python files) into the wheel. With
BNORACLE_CMAKE_BUILD_DIR set, an existing configured build directory is used instead (its
extension must be built for the same interpreter, e.g. /usr/bin/python3 and a virtual
environment made from it). Needs what the CMake build needs (tools/install-deps).
"""
import os
import pathlib
import shutil
import subprocess
import sys

from setuptools import Command, Distribution, setup
from setuptools.command.build import build

ROOT = pathlib.Path(__file__).parent.resolve()


class BinaryDistribution(Distribution):
    """The wheel holds a compiled extension: tag it for this platform and interpreter."""

    def has_ext_modules(self):
        return True


class BuildWithCMake(Command):
    """Builds the package with CMake into the build's library directory."""

    description = "build the bnoracle package with CMake"
    user_options = []

    def initialize_options(self):
        self.build_lib = None

    def finalize_options(self):
        self.set_undefined_options("build", ("build_lib", "build_lib"))

    def run(self):
        build = os.environ.get("BNORACLE_CMAKE_BUILD_DIR")
        jobs = str(os.cpu_count() or 1)
        if build:
            build = pathlib.Path(build).resolve()
        else:
            build = ROOT / "build" / "pip"
            subprocess.run(["cmake", "-S", str(ROOT), "-B", str(build),
                            "-DCMAKE_BUILD_TYPE=Release", "-DBNORACLE_BUILD_TESTS=OFF",
                            "-DBNORACLE_BUILD_BENCHMARKS=OFF",
                            f"-DBNORACLE_PYTHON_INTERPRETER={sys.executable}"], check=True)
        subprocess.run(["cmake", "--build", str(build), "--target", "bnoracle_python",
                        "-j", jobs], check=True)
        package = build / "python" / "bnoracle"
        if not any(package.glob("_bnoracle*.so")):
            sys.exit(f"setup.py: no extension in {package}: is pybind11-dev installed? "
                     "(tools/install-deps)")
        target = pathlib.Path(self.build_lib) / "bnoracle"
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(package, target, ignore=shutil.ignore_patterns("__pycache__"))


class Build(build):
    # The package has no Python modules setuptools would build: the CMake step makes all of it.
    sub_commands = [("build_cmake", None)] + build.sub_commands


setup(distclass=BinaryDistribution, cmdclass={"build": Build, "build_cmake": BuildWithCMake})
