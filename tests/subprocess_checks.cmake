# `bnoracle check --exec` end to end: the numpy example kernel is conformant at the lenient level
# (catalog and properties), the report's reproduction commands use --exec, and the usage errors of
# --exec exit 2. Invoked by ctest with -DBNORACLE=... -DPYTHON=... -DKERNEL=... -DPLUGIN=...
set(cmd "'${PYTHON}' '${KERNEL}'")

function(expect_exit code)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL code)
    message(FATAL_ERROR "expected exit ${code}, got ${rc}: ${ARGN}\n${out}\n${err}")
  endif()
endfunction()

string(TIMESTAMP t0 "%s")
execute_process(COMMAND ${BNORACLE} check --exec ${cmd} --level lenient --verbose
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
string(TIMESTAMP t1 "%s")
math(EXPR secs "${t1} - ${t0}")
if(NOT rc EQUAL 0 OR NOT out MATCHES "verdict: CONFORMANT at lenient"
   OR NOT out MATCHES "repro: bnoracle check --exec \"")
  message(FATAL_ERROR "numpy kernel through --exec: exit ${rc}\n${out}\n${err}")
endif()
message(STATUS "numpy kernel conformant through --exec in ${secs} s")

# Usage errors: both kernel options, neither, an unterminated quote, a command that cannot start.
expect_exit(2 ${BNORACLE} check --exec ${cmd} --kernel ${PLUGIN})
expect_exit(2 ${BNORACLE} check --level lenient)
expect_exit(2 ${BNORACLE} check --exec "'unterminated")
expect_exit(2 ${BNORACLE} check --exec "/nonexistent/kernel --flag")
expect_exit(2 ${BNORACLE} identify --exec "${PYTHON} -c \"import sys; sys.exit(1)\"")
expect_exit(0 ${BNORACLE} identify --exec ${cmd})
