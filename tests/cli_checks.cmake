# End-to-end checks of the bnoracle CLI: documented exit codes and a JUnit report that a real XML
# parser accepts. Invoked by ctest with -DBNORACLE=... -DKERNELS=... -DFAULTY=... -DWORK=...
# [-DPYTHON=...].
file(MAKE_DIRECTORY "${WORK}")

function(expect_exit code)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL code)
    message(FATAL_ERROR "expected exit ${code}, got ${rc}: ${ARGN}\n${out}\n${err}")
  endif()
endfunction()

# Checks a JUnit report against the rules of junit-10.xsd and of the CI readers
# (tests/check_junit.py); ARGN: --expect failure|error|skipped.
function(check_junit xml)
  if(NOT PYTHON)
    return()
  endif()
  execute_process(COMMAND ${PYTHON} ${CMAKE_CURRENT_LIST_DIR}/check_junit.py ${xml} ${ARGN}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "the JUnit report is not valid: ${out}${err}")
  endif()
  message(STATUS "${out}")
endfunction()

# 0: a correct kernel is conformant (a filtered run keeps this fast).
expect_exit(0 ${BNORACLE} check --kernel ${KERNELS}/libbnk_pairwise.so --filter exact/basic)
# In-process (debugging) mode gives the same verdict on a well-behaved kernel.
expect_exit(0 ${BNORACLE} check --kernel ${KERNELS}/libbnk_welford.so --filter exact/three_values
            --no-isolation)
# The property suite alone, a few cases: conformant, and the report names the seed.
execute_process(COMMAND ${BNORACLE} check --kernel ${KERNELS}/libbnk_pairwise.so --properties-only
                        --property-cases 8 --seed 42
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0 OR NOT out MATCHES "properties \\(8 generated cases each, seed 42"
   OR NOT out MATCHES "permutation_equivariance +pass")
  message(FATAL_ERROR "properties-only run: exit ${rc}\n${out}\n${err}")
endif()
# Progress in a log (stderr not a terminal): with BNORACLE_PROGRESS_SECONDS=0 a line per item,
# counting the failures so far; none with --quiet. ctest's pipes are not terminals.
foreach(quiet "" --quiet)
  execute_process(COMMAND ${CMAKE_COMMAND} -E env BNORACLE_PROGRESS_SECONDS=0
                          ${BNORACLE} check --kernel ${KERNELS}/mutants/libbnm_biased_running_var.so
                          --filter exact/basic --no-properties ${quiet}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  string(REGEX MATCHALL "bnoracle check: [0-9]+ of [0-9]+ done, [0-9]+ failing so far, [0-9]+ s: "
         lines "${err}")
  list(LENGTH lines n)
  if(NOT rc EQUAL 1 OR (quiet STREQUAL "" AND NOT err MATCHES "1 of 2 done, [1-9][0-9]* failing")
     OR (quiet STREQUAL "--quiet" AND NOT n EQUAL 0))
    message(FATAL_ERROR "progress lines (${quiet}): exit ${rc}, ${n} lines\n${err}")
  endif()
endforeach()
# A property's shrunk counterexample can run to megabytes: the text report cuts a reason at
# k_report_reason_limit characters and the whole of it goes to a file next to the report. A file
# of that name that bnoracle did not write is left alone, and that reason stays whole.
set(lr ${WORK}/long_reasons)
file(REMOVE_RECURSE ${lr})
file(MAKE_DIRECTORY ${lr})
set(foreign ${lr}/bnoracle-block_remainder_dropped-property_recovery_property-seed1.txt)
file(WRITE ${foreign} "somebody else's file\n")
expect_exit(1 ${BNORACLE} check --kernel ${KERNELS}/mutants/libbnm_block_remainder_dropped.so
            --properties-only --property-cases 30 --filter property/re* --quiet
            --output ${lr}/report.txt)
file(READ ${lr}/report.txt report)
file(READ ${foreign} foreign_text)
string(REGEX MATCHALL "the whole reason is in [^\n]+" pointers "${report}")
list(LENGTH pointers n)
if(n EQUAL 0 OR NOT foreign_text STREQUAL "somebody else's file\n"
   OR report MATCHES "reason is in [^\n]*property_recovery")
  message(FATAL_ERROR "long reasons: ${n} pointers, foreign file now '${foreign_text}'\n${report}")
endif()
foreach(p IN LISTS pointers)
  string(REPLACE "the whole reason is in " "" path "${p}")
  file(READ ${path} whole)
  string(LENGTH "${whole}" len)
  if(len LESS 2000 OR NOT whole MATCHES "^bnoracle: the whole reason of property/")
    message(FATAL_ERROR "${path}: ${len} characters")
  endif()
endforeach()
message(STATUS "long reasons: ${n} written whole next to the report")
# Several reports in one run: --report text,json,junit --output-dir DIR writes the three (the
# directory created), each a whole report of the same run; several formats without
# --output-dir, or --output with --output-dir, are usage errors.
set(od ${WORK}/reports/nested)
file(REMOVE_RECURSE ${WORK}/reports)
expect_exit(1 ${BNORACLE} check --kernel ${KERNELS}/mutants/libbnm_biased_running_var.so
            --filter exact/basic --no-properties --quiet --report text,json,junit --output-dir ${od})
file(READ ${od}/report.txt text_report)
file(READ ${od}/report.json json_report)
string(JSON json_failed GET "${json_report}" summary failed)
if(NOT text_report MATCHES "verdict: NOT CONFORMANT" OR json_failed EQUAL 0)
  message(FATAL_ERROR "reports of one run disagree:\n${text_report}\n${json_failed}")
endif()
check_junit(${od}/report.xml --expect failure)
expect_exit(2 ${BNORACLE} check --kernel ${KERNELS}/libbnk_pairwise.so --report text,json)
expect_exit(2 ${BNORACLE} check --kernel ${KERNELS}/libbnk_pairwise.so --output ${WORK}/r.txt
            --output-dir ${od})
expect_exit(2 ${BNORACLE} check --kernel ${KERNELS}/libbnk_pairwise.so --report text,pdf
            --output-dir ${od})
# MISTRUSTED is explained in one line where it first appears in the details, and only there.
execute_process(COMMAND ${BNORACLE} check --kernel ${KERNELS}/libbnk_pairwise.so
                        --filter general/offset_1e6 --no-properties
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
string(REGEX MATCHALL "\\(MISTRUSTED: more than half" explained "${out}")
string(REGEX MATCHALL "\nMISTRUSTED " mistrusted "${out}")
list(LENGTH explained n_explained)
list(LENGTH mistrusted n_mistrusted)
if(NOT rc EQUAL 5 OR NOT n_explained EQUAL 1 OR n_mistrusted LESS 2)
  message(FATAL_ERROR "MISTRUSTED explained ${n_explained} times for ${n_mistrusted}:\n${out}")
endif()
# A kernel that crashes in every call: each property reports the fault (exit 3), quickly.
expect_exit(3 ${BNORACLE} check --kernel ${FAULTY}/faulty_null_deref.so --properties-only
            --filter property/eval_determinism --property-cases 5 --timeout 5)
expect_exit(2 ${BNORACLE} check --kernel ${KERNELS}/libbnk_pairwise.so --property-cases 0)
expect_exit(2 ${BNORACLE} check --kernel ${KERNELS}/libbnk_pairwise.so --properties-only
            --no-properties)
# identify reads the bundled kernels' convention back.
expect_exit(0 ${BNORACLE} identify --kernel ${KERNELS}/libbnk_two_pass.so)
# 2: usage and input errors.
expect_exit(2 ${BNORACLE} check --kernel ${WORK}/does-not-exist.so)
expect_exit(2 ${BNORACLE} check --kernel ${KERNELS}/libbnk_pairwise.so --level bogus)
expect_exit(2 ${BNORACLE} check --kernel ${KERNELS}/libbnk_pairwise.so --seed -3)
expect_exit(2 ${BNORACLE} frobnicate)
# 3: a kernel that dereferences a null pointer in every call is a kernel fault, and the run
# still completes and reports.
expect_exit(3 ${BNORACLE} check --kernel ${FAULTY}/faulty_null_deref.so --filter exact/two_values
            --timeout 5)
# JUnit reports, written to a file and checked against the rules of junit-10.xsd and of the CI
# readers (tests/check_junit.py): a faulting run (<error>), a failing mutant (<failure>), a
# kernel that skips modes (<skipped>), and the property suite (a test class per property).
set(xml ${WORK}/report.xml)
expect_exit(3 ${BNORACLE} check --kernel ${FAULTY}/faulty_null_deref.so --filter exact/two_values
            --report junit --output ${xml})
check_junit(${xml} --expect error)
expect_exit(1 ${BNORACLE} check --kernel ${KERNELS}/mutants/libbnm_biased_running_var.so
            --filter exact/basic --no-properties --report junit --output ${xml})
check_junit(${xml} --expect failure)
expect_exit(0 ${BNORACLE} check --kernel ${KERNELS}/libbnk_minimal.so --filter exact/basic
            --no-properties --report junit --output ${xml})
check_junit(${xml} --expect skipped)
expect_exit(0 ${BNORACLE} check --kernel ${KERNELS}/libbnk_pairwise.so --properties-only
            --property-cases 2 --report junit --output ${xml})
check_junit(${xml})

# `results --convention NAME` runs the kernel under NAME: a fixture of the kernel's own convention
# (pytorch) is then of another convention, and its running statistics are omitted.
set(one ${WORK}/one_fixture/convention/pytorch/nchw_2x3x2x2)
file(REMOVE_RECURSE ${WORK}/one_fixture ${WORK}/one_results)
file(MAKE_DIRECTORY ${one})
file(COPY ${CORPUS}/convention/pytorch/nchw_2x3x2x2/forward_training_step1.json DESTINATION ${one})
set(written ${WORK}/one_results/convention/pytorch/nchw_2x3x2x2/forward_training_step1.json)
foreach(conv pytorch keras)
  expect_exit(0 ${BNORACLE} results --kernel ${KERNELS}/libbnk_two_pass.so --convention ${conv}
              --fixtures ${WORK}/one_fixture --out ${WORK}/one_results)
  file(READ ${written} text)
  string(FIND "${text}" "\"running_statistics\": \"omitted\"" at)
  if(conv STREQUAL "pytorch" AND NOT at EQUAL -1 OR conv STREQUAL "keras" AND at EQUAL -1)
    message(FATAL_ERROR "results --convention ${conv}: unexpected running statistics\n${text}")
  endif()
  expect_exit(0 ${BNORACLE} verify --fixtures ${WORK}/one_fixture --results ${WORK}/one_results)
endforeach()

# A convention stated by its fields. The mutant biased_running_var is PyTorch's convention with
# the biased running variance: killed under pytorch, conformant once that convention is stated,
# by fields or by a JSON file, and identify states what it observes in the same syntax.
set(biased ${KERNELS}/mutants/libbnm_biased_running_var.so)
set(stated "momentum=new,running_var=biased,cumulative=yes,l1=refuse,l0=unchanged")
expect_exit(1 ${BNORACLE} check --kernel ${biased} --no-properties --filter exact/)
expect_exit(0 ${BNORACLE} check --kernel ${biased} --no-properties --filter exact/
            --convention ${stated})
file(WRITE ${WORK}/textbook.json
     "{\"running_var\": \"biased\", \"momentum\": \"new\", \"cumulative\": true, \"l1\": \"refuse\", \"l0\": \"unchanged\"}")
execute_process(COMMAND ${BNORACLE} check --kernel ${biased} --no-properties
                        --filter exact/ --convention ${WORK}/textbook.json
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0 OR NOT out MATCHES "judged under convention ${stated}")
  message(FATAL_ERROR "check --convention FILE.json: exit ${rc}\n${out}\n${err}")
endif()
execute_process(COMMAND ${BNORACLE} identify --kernel ${biased}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0 OR NOT out MATCHES "as --convention +${stated}\n")
  message(FATAL_ERROR "identify of biased_running_var: exit ${rc}\n${out}\n${err}")
endif()
expect_exit(2 ${BNORACLE} check --kernel ${biased} --convention momentum=sideways,running_var=biased)
expect_exit(2 ${BNORACLE} check --kernel ${biased} --convention ${WORK}/does-not-exist.json)
