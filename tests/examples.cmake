# Runs the worked Python example (examples/python) against the golden fixtures and judges it with
# `bnoracle verify`. Invoked by ctest as a script (cmake -P), see tests/CMakeLists.txt.
#
#   -DBNORACLE=path      the bnoracle executable
#   -DPYTHON=path        a Python 3 with numpy (/usr/bin/python3 with Debian's python3-numpy)
#   -DSCRIPT=path        examples/python/run_fixtures.py
#   -DCORPUS=path        the checked-in corpus (fixtures/corpus); used when it holds fixtures
#   -DWORK=path          a scratch directory of this test alone
#   -DWRONG=name         optional: a deliberate bug (run_fixtures.py --wrong); verify must then
#                        exit 1 and its report must mention EXPECT_IN_REPORT
#   -DEXPECT_IN_REPORT=s text the failing report must contain (with WRONG)
cmake_minimum_required(VERSION 3.25)

foreach(var BNORACLE PYTHON SCRIPT WORK)
  if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
    message(FATAL_ERROR "examples.cmake: -D${var}=... is required")
  endif()
endforeach()

# 1. The fixtures: the checked-in corpus if there is one, else a fresh export.
set(fixtures "")
if(DEFINED CORPUS AND IS_DIRECTORY "${CORPUS}")
  file(GLOB_RECURSE corpus_files "${CORPUS}/*.json")
  if(corpus_files)
    set(fixtures "${CORPUS}")
  endif()
endif()
if(fixtures STREQUAL "")
  set(fixtures "${WORK}/fixtures")
  file(REMOVE_RECURSE "${fixtures}")
  execute_process(COMMAND "${BNORACLE}" export --out "${fixtures}"
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "bnoracle export failed (exit ${rc}):\n${out}${err}")
  endif()
  message(STATUS "fixtures: exported to ${fixtures}: ${out}${err}")
else()
  message(STATUS "fixtures: checked-in corpus ${fixtures}")
endif()

# 2. The Python example writes one results file per fixture (stale results removed first).
set(results "${WORK}/results")
file(REMOVE_RECURSE "${results}")
set(wrong_args "")
if(DEFINED WRONG AND NOT WRONG STREQUAL "")
  set(wrong_args --wrong "${WRONG}")
endif()
execute_process(COMMAND "${PYTHON}" "${SCRIPT}" "${fixtures}" "${results}" ${wrong_args}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "run_fixtures.py failed (exit ${rc}):\n${out}${err}")
endif()
message(STATUS "${out}")

# 3. bnoracle verify judges the results.
execute_process(COMMAND "${BNORACLE}" verify --fixtures "${fixtures}" --results "${results}"
                RESULT_VARIABLE rc OUTPUT_VARIABLE report ERROR_VARIABLE err)
file(WRITE "${WORK}/verify-report.txt" "${report}${err}")
string(REGEX MATCH "[0-9]+ passed, [0-9]+ failed, [^\n]*" summary "${report}")

if(DEFINED WRONG AND NOT WRONG STREQUAL "")
  if(NOT rc EQUAL 1)
    message(FATAL_ERROR "verify should reject --wrong ${WRONG} with exit 1, got ${rc}:\n"
                        "${report}${err}")
  endif()
  if(DEFINED EXPECT_IN_REPORT AND NOT EXPECT_IN_REPORT STREQUAL "")
    string(FIND "${report}" "${EXPECT_IN_REPORT}" at)
    if(at EQUAL -1)
      message(FATAL_ERROR "verify rejected --wrong ${WRONG}, but its report does not mention "
                          "'${EXPECT_IN_REPORT}':\n${report}${err}")
    endif()
  endif()
  message(STATUS "verify rejected --wrong ${WRONG} as intended: ${summary}")
else()
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "verify rejected the numpy example (exit ${rc}):\n${report}${err}")
  endif()
  message(STATUS "verify accepted the numpy example: ${summary}")
endif()
