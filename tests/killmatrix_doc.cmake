# The kill matrix document (docs/kill-matrix.md) is what the tool writes from this build's runs:
# assembles the JSON records the KillMatrix.* tests left in WORK and compares the result with the
# checked-in document byte for byte. Invoked by ctest with -DKILLMATRIX=... -DMANIFEST=...
# -DWORK=... -DDOC=... -DCORRECT="a.so:level,b.so:level".
string(REPLACE "," ";" CORRECT "${CORRECT}")
set(args --assemble ${WORK} --manifest ${MANIFEST} --markdown ${WORK}/kill-matrix.md)
foreach(k IN LISTS CORRECT)
  list(APPEND args --correct ${k})
endforeach()
execute_process(COMMAND ${KILLMATRIX} ${args} RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "the kill matrix does not hold (exit ${rc}): a mutant survived, a correct "
                      "kernel was flagged, or a KillMatrix.* run is missing; see "
                      "${WORK}/kill-matrix.md")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} -E compare_files ${DOC} ${WORK}/kill-matrix.md
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "docs/kill-matrix.md differs from what this build's runs give "
                      "(${WORK}/kill-matrix.md): regenerate it with tools/run-kill-matrix")
endif()
message(STATUS "docs/kill-matrix.md is current")
