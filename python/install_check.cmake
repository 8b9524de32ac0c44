# Installs the Python package into a fresh virtual environment (made from /usr/bin/python3 with
# its system packages, for NumPy) and imports it there from another directory, with no
# PYTHONPATH: what docs/python.md tells a user to do. -DPYTHON=... -DBUILD=... -DWORK=...
# -DMETHOD=cmake (cmake --install --component python) or pip (pip install --no-build-isolation
# of the source tree -DSOURCE=..., reusing the build directory; then the pytest plugin must be
# registered by the package, with no conftest.py).
file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}")
function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err
                  WORKING_DIRECTORY "${WORK}")
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
  set(out "${out}" PARENT_SCOPE)
endfunction()
set(ENV{PYTHONPATH} "")
if(METHOD STREQUAL "pip")
  run(${PYTHON} -m venv --system-site-packages "${WORK}/env")
  set(ENV{BNORACLE_CMAKE_BUILD_DIR} "${BUILD}")
  run("${WORK}/env/bin/python" -m pip install --no-build-isolation --no-index --no-deps
      "${SOURCE}")
else()
  run(${PYTHON} -m venv --without-pip --system-site-packages "${WORK}/env")
  run(${CMAKE_COMMAND} --install "${BUILD}" --component python --prefix "${WORK}/env")
endif()
# A script file: the code's semicolons would split a CMake argument list.
file(WRITE "${WORK}/check.py" [=[
import numpy as np
import bnoracle
x = np.array([[1.0], [2.0]], dtype=np.float32)
ref = bnoracle.reference("batch_norm", "forward_training", x)
assert bnoracle.judge("batch_norm", "forward_training", x, {"dst": ref.golden("dst")})
print(bnoracle.__file__)
]=])
run("${WORK}/env/bin/python" "${WORK}/check.py")
if(NOT out MATCHES "^${WORK}/env/lib/")
  message(FATAL_ERROR "bnoracle was imported from ${out}, not from the environment")
endif()
message(STATUS "imported from ${out}")
if(METHOD STREQUAL "pip")
  # The plugin comes with the package: a test using the `bnoracle` fixture, and no conftest.py.
  file(WRITE "${WORK}/test_plugin.py" [=[
import numpy as np


def test_fixture_is_there(bnoracle):
    x = np.array([[1.0], [2.0]], dtype=np.float32)
    y = np.array([[-1.0], [1.0]], dtype=np.float32)
    bnoracle.assert_conformant("batch_norm", "forward_training", x, {"dst": y}, eps=0.0)
]=])
  run("${WORK}/env/bin/python" -m pytest -q -p no:cacheprovider "${WORK}/test_plugin.py")
  message(STATUS "pytest: ${out}")
endif()

