# Runs tests/test_gtest_failing.cpp's program (-DPROGRAM=...) and checks how bnoracle::gtest
# reports a defective kernel: the program fails, and the output names the case, the mode, the
# wrong output, the crash, the property's counterexample and a reproduction command. Then a
# malformed BNORACLE_SEED must fail the registration with a readable reason.
execute_process(COMMAND "${PROGRAM}" OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
set(all "${out}${err}")
if(rc EQUAL 0)
  message(FATAL_ERROR "the defective kernel passed:\n${all}")
endif()
foreach(needle
    "[bnoracle ] DefectiveCatalog: seed 1"
    "[  FAILED  ] DefectiveCatalog.exact_basic_nchw_4x3x5x5"
    "forward_training step 0: FAIL at standard"
    "running_var"
    "backward_inference: FAULT"
    "SIGABRT"
    "reproduce: BNORACLE_SEED=1 "
    "--gtest_filter=DefectiveCatalog.exact_basic_nchw_4x3x5x5"
    "[  FAILED  ] DefectiveProperty.property_momentum_convention"
    "property momentum_convention"
    "counterexample (shrunk)"
    "[  FAILED  ] NothingJudged.evidence"
    "NOTHING JUDGED: the tests of NothingJudged passed without evidence")
  string(FIND "${all}" "${needle}" pos)
  if(pos EQUAL -1)
    message(FATAL_ERROR "expected '${needle}' in the output:\n${all}")
  endif()
endforeach()

execute_process(COMMAND ${CMAKE_COMMAND} -E env BNORACLE_SEED=12x "${PROGRAM}"
                OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
set(all "${out}${err}")
if(rc EQUAL 0)
  message(FATAL_ERROR "a malformed BNORACLE_SEED passed:\n${all}")
endif()
foreach(needle "[  FAILED  ] DefectiveCatalog.configuration"
               "BNORACLE_SEED must be a decimal integer")
  string(FIND "${all}" "${needle}" pos)
  if(pos EQUAL -1)
    message(FATAL_ERROR "expected '${needle}' in the output:\n${all}")
  endif()
endforeach()

execute_process(COMMAND ${CMAKE_COMMAND} -E env BNORACLE_SEED=99 "${PROGRAM}"
                        --gtest_filter=DefectiveCatalog.exact_basic_nchw_4x3x5x5
                OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
string(FIND "${out}${err}" "[bnoracle ] DefectiveCatalog: seed 99" pos)
if(pos EQUAL -1)
  message(FATAL_ERROR "BNORACLE_SEED=99 was not used:\n${out}${err}")
endif()
