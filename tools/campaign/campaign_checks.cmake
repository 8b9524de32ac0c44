# The false-positive campaign's own tests (tests/CMakeLists.txt), run with cmake -P:
#   -DCAMPAIGN=<bnoracle_campaign> -DKERNELS=<dir of libbnk_*.so> -DWORK=<scratch dir>
#   -DMODE=pass|fail|usage|deterministic|shards  [-DPROBLEMS=N] [-DFAMILY_PROBLEMS=N]
#   [-DWRONG=<wrong kernel .so>] [-DTYPES=<data-type configuration> (pass: in those types)]
#
# pass           every bundled correct kernel passes N batch-norm problems and FAMILY_PROBLEMS of
#                each other op it declares at its guaranteed level (exit 0), and the Markdown and
#                JSON reports are written with every declared op
# fail           a deliberately wrong kernel fails (exit 1) in batch norm's stream and in layer
#                norm's, with the problem in hex and a reproduction command, which itself fails
#                again
# usage          usage errors and an unloadable plugin exit 2 with a message
# deterministic  the Markdown and JSON do not depend on --jobs
# shards         three --shard K/3 runs merged with --merge give the unsharded run's Markdown and
#                JSON (failures of the wrong kernel included, with the same exit code), and a
#                missing, repeated or foreign shard is refused (exit 2), never merged
# regressions    the problems a full campaign once failed on (seed 1), each run alone with
#                --only on every bundled kernel that declares its op, pass: a reference or
#                model defect they exposed stays fixed without the full campaign's hour
cmake_minimum_required(VERSION 3.25)
foreach(v CAMPAIGN KERNELS WORK MODE)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "campaign_checks: -D${v}=... is required")
  endif()
endforeach()
if(NOT DEFINED PROBLEMS)
  set(PROBLEMS 100)
endif()
if(NOT DEFINED FAMILY_PROBLEMS)
  set(FAMILY_PROBLEMS ${PROBLEMS})
endif()
# A sample for the sanitizer pass (.ci/run), which looks for memory errors, not for the rare
# problem that a full campaign would find; the fail mode keeps its count, which it needs to fail.
if(MODE STREQUAL "pass" AND DEFINED ENV{BNORACLE_CAMPAIGN_PROBLEMS})
  set(PROBLEMS $ENV{BNORACLE_CAMPAIGN_PROBLEMS})
  math(EXPR FAMILY_PROBLEMS "(${PROBLEMS} + 4) / 5")
endif()
file(REMOVE_RECURSE ${WORK})
file(MAKE_DIRECTORY ${WORK})
set(correct two_pass welford pairwise blocked_threads compensated minimal)
# -DTYPES=CONFIGURATION: the pass mode in float16/bfloat16 data types, without the float32-only
# C kernel.
set(types_args)
if(DEFINED TYPES)
  list(REMOVE_ITEM correct minimal)
  set(types_args --types ${TYPES})
endif()
list(LENGTH correct ncorrect)

# run(<expected exit code> <args...>): runs the campaign in WORK; sets OUT and ERR.
function(run expected)
  execute_process(COMMAND ${CAMPAIGN} ${ARGN} WORKING_DIRECTORY ${WORK}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc STREQUAL "${expected}")
    message(FATAL_ERROR "bnoracle_campaign ${ARGN}\nexited with ${rc}, expected ${expected}\n"
                        "stdout:\n${out}\nstderr:\n${err}")
  endif()
  set(OUT "${out}" PARENT_SCOPE)
  set(ERR "${err}" PARENT_SCOPE)
endfunction()

function(expect_in text what)
  string(FIND "${text}" "${what}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "expected '${what}' in:\n${text}")
  endif()
endfunction()

if(MODE STREQUAL "pass")
  set(args)
  foreach(k IN LISTS correct)
    list(APPEND args --kernel ${KERNELS}/libbnk_${k}.so)
  endforeach()
  run(0 ${args} --problems ${PROBLEMS} --family-problems ${FAMILY_PROBLEMS} --seed 1 --jobs 2
      ${types_args} --markdown campaign.md --json campaign.json)
  message("${OUT}")
  message("${ERR}")
  expect_in("${OUT}" "campaign: PASS")
  file(READ ${WORK}/campaign.json json)
  string(JSON nkernels LENGTH "${json}" kernels)
  if(NOT nkernels EQUAL ncorrect)
    message(FATAL_ERROR "campaign.json has ${nkernels} kernels, expected ${ncorrect}")
  endif()
  math(EXPR last "${nkernels} - 1")
  foreach(i RANGE ${last})
    string(JSON name GET "${json}" kernels ${i} name)
    string(JSON failed GET "${json}" kernels ${i} failed_problems)
    string(JSON nops LENGTH "${json}" kernels ${i} ops)
    # The C kernel declares batch norm only; the five others every op of the family.
    if(name STREQUAL "minimal")
      set(expected_ops batch_norm)
    else()
      set(expected_ops batch_norm layer_norm rms_norm group_norm instance_norm)
    endif()
    list(LENGTH expected_ops n)
    if(NOT failed EQUAL 0 OR NOT nops EQUAL n)
      message(FATAL_ERROR "${name}: ${failed} failing problems, ${nops} ops (expected ${n})")
    endif()
    math(EXPR last_op "${n} - 1")
    foreach(o RANGE ${last_op})
      list(GET expected_ops ${o} want)
      string(JSON op GET "${json}" kernels ${i} ops ${o} op)
      string(JSON problems GET "${json}" kernels ${i} ops ${o} problems)
      string(JSON judged GET "${json}" kernels ${i} ops ${o} rows 0 judged)
      if(want STREQUAL "batch_norm")
        set(want_problems ${PROBLEMS})
      else()
        set(want_problems ${FAMILY_PROBLEMS})
      endif()
      if(NOT op STREQUAL want OR NOT problems EQUAL want_problems OR judged EQUAL 0)
        message(FATAL_ERROR "${name}: op ${o} is ${op} with ${problems} problems and ${judged} "
                            "dst elements judged (expected ${want}, ${want_problems}, some)")
      endif()
    endforeach()
  endforeach()
  file(READ ${WORK}/campaign.md md)
  expect_in("${md}" "**Result: 0 failing problems**")
  expect_in("${md}" "### compensated (strict)")
  expect_in("${md}" "## Group norm")
elseif(MODE STREQUAL "fail")
  if(NOT DEFINED WRONG)
    message(FATAL_ERROR "campaign_checks: -DWRONG=... is required for MODE=fail")
  endif()
  run(1 --kernel ${WRONG}:lenient --problems ${PROBLEMS} --family-problems 20 --jobs 2
      --markdown wrong.md)
  expect_in("${OUT}" "FAIL biased_sum batch_norm problem")
  expect_in("${OUT}" "campaign: FAIL")
  expect_in("${OUT}" "src = [0x")  # the problem in hex floats
  expect_in("${OUT}" "save_mean")
  foreach(op layer_norm rms_norm group_norm instance_norm)
    expect_in("${OUT}" "FAIL biased_sum ${op} problem")
  endforeach()
  file(READ ${WORK}/wrong.md md)
  expect_in("${md}" "## Failures")
  # The first reproduction command printed for batch norm and for layer norm fails again alone.
  set(campaign_out "${OUT}")
  foreach(op batch_norm layer_norm)
    string(REGEX MATCH "reproduce: bnoracle_campaign [^\n]*--op ${op} --only ([0-9]+)" repro
           "${campaign_out}")
    if(NOT repro)
      message(FATAL_ERROR "no reproduction command for ${op} in:\n${campaign_out}")
    endif()
    set(index ${CMAKE_MATCH_1})
    run(1 --kernel ${WRONG}:lenient --seed 1 --op ${op} --only ${index})
    expect_in("${OUT}" "FAIL biased_sum ${op} problem ${index}")
  endforeach()
elseif(MODE STREQUAL "usage")
  set(k ${KERNELS}/libbnk_two_pass.so)
  run(2 --kernel ${k} --frobnicate)
  expect_in("${ERR}" "unknown option '--frobnicate'")
  expect_in("${ERR}" "usage: bnoracle_campaign")
  run(2 --problems 10)
  expect_in("${ERR}" "no --kernel given")
  run(2 --kernel ${WORK}/no_such_kernel.so)
  expect_in("${ERR}" "cannot load kernel")
  run(2 --kernel ${k} --level medium)
  expect_in("${ERR}" "unknown level 'medium'")
  run(2 --kernel ${k} --problems 0)
  expect_in("${ERR}" "--problems")
  run(2 --kernel ${k} --jobs)
  expect_in("${ERR}" "--jobs needs a value")
  run(2 --kernel ${k} --op batchnorm)
  expect_in("${ERR}" "--op: unknown op 'batchnorm'")
  run(2 --kernel ${KERNELS}/libbnk_minimal.so --op layer_norm)
  expect_in("${ERR}" "does not declare layer_norm")
  run(0 --help)
  expect_in("${OUT}" "usage: bnoracle_campaign")
elseif(MODE STREQUAL "deterministic")
  set(args --kernel ${KERNELS}/libbnk_welford.so --kernel ${KERNELS}/libbnk_pairwise.so
           --problems ${PROBLEMS} --family-problems ${FAMILY_PROBLEMS} --seed 3)
  run(0 ${args} --jobs 1 --markdown report.md --json report.json)
  file(RENAME ${WORK}/report.md ${WORK}/jobs1.md)
  file(RENAME ${WORK}/report.json ${WORK}/jobs1.json)
  run(0 ${args} --jobs 3 --markdown report.md --json report.json)
  foreach(ext md json)
    file(READ ${WORK}/jobs1.${ext} a)
    file(READ ${WORK}/report.${ext} b)
    if(NOT a STREQUAL b)
      message(FATAL_ERROR "the ${ext} report depends on --jobs (${WORK}/jobs1.${ext} vs "
                          "${WORK}/report.${ext})")
    endif()
  endforeach()
elseif(MODE STREQUAL "shards")
  set(args --kernel ${KERNELS}/libbnk_welford.so --kernel ${WRONG} --problems ${PROBLEMS}
           --family-problems ${FAMILY_PROBLEMS} --seed 4)
  run(1 ${args} --jobs 2 --markdown report.md --json report.json)
  file(RENAME ${WORK}/report.md ${WORK}/whole.md)
  file(RENAME ${WORK}/report.json ${WORK}/whole.json)
  foreach(k 1 2 3)
    run(1 ${args} --shard ${k}/3 --json shard${k}.json)
  endforeach()
  run(1 ${args} --merge shard2.json --merge shard3.json --merge shard1.json --markdown report.md
      --json report.json)
  file(READ ${WORK}/whole.md a)
  file(READ ${WORK}/report.md b)
  if(NOT a STREQUAL b)
    message(FATAL_ERROR "the merged shards' Markdown differs from the unsharded run's "
                        "(${WORK}/whole.md vs ${WORK}/report.md)")
  endif()
  file(READ ${WORK}/whole.json a)
  file(READ ${WORK}/report.json b)
  if(NOT a STREQUAL b)
    message(FATAL_ERROR "the merged shards' JSON differs from the unsharded run's")
  endif()
  run(2 ${args} --merge shard1.json --merge shard2.json)
  if(NOT ERR MATCHES "shard 3/3 is missing")
    message(FATAL_ERROR "a missing shard: ${ERR}")
  endif()
  run(2 ${args} --merge shard1.json --merge shard1.json --merge shard2.json --merge shard3.json)
  if(NOT ERR MATCHES "given twice")
    message(FATAL_ERROR "a repeated shard: ${ERR}")
  endif()
  run(2 --kernel ${KERNELS}/libbnk_welford.so --kernel ${WRONG} --problems ${PROBLEMS}
      --family-problems ${FAMILY_PROBLEMS} --seed 5 --merge shard1.json --merge shard2.json
      --merge shard3.json)
  if(NOT ERR MATCHES "a shard of another run")
    message(FATAL_ERROR "a foreign shard: ${ERR}")
  endif()
elseif(MODE STREQUAL "regressions")
  # op:problem of seed 1, with what each exposed:
  #   rms_norm 1190 1510 2803 3022 3928  the exact dγ's reduction of commensurable square roots
  #                                      (a later term of a merged square was not rescaled)
  #   rms_norm 2827                      dx of a one-element row: dy·(x − μ) underflows before
  #                                      ×r, carried by r² (the underflow term of the model)
  #   layer_norm 602, rms_norm 395,      dβ over several groups at strict: the bundled strict
  #   group_norm 186 2005 2510 2622      kernels added the groups' partial sums sequentially
  #   2817 3428 3830
  set(cases rms_norm:1190 rms_norm:1510 rms_norm:2803 rms_norm:3022 rms_norm:3928
            rms_norm:2827 rms_norm:395 layer_norm:602 group_norm:186 group_norm:2005
            group_norm:2510 group_norm:2622 group_norm:2817 group_norm:3428 group_norm:3830)
  foreach(k two_pass welford pairwise blocked_threads compensated)
    foreach(c IN LISTS cases)
      string(REPLACE ":" ";" parts "${c}")
      list(GET parts 0 op)
      list(GET parts 1 index)
      run(0 --kernel ${KERNELS}/libbnk_${k}.so --seed 1 --op ${op} --only ${index})
      expect_in("${OUT}" "campaign: PASS, 0 failing problems of 1")
    endforeach()
  endforeach()
else()
  message(FATAL_ERROR "campaign_checks: unknown MODE '${MODE}'")
endif()
