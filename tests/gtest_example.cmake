# Installs the build tree into a scratch prefix, then configures and builds examples/gtest (a
# user's project: find_package(bnoracle), a kernel of its own and BNORACLE_CONFORMANCE_SUITE)
# against it with the same compiler and flags, and runs its conformance test program, which must
# pass. Invoked by ctest with -DBUILD_DIR=... -DSOURCE_DIR=... -DWORK_DIR=... -DCXX_COMPILER=...
# -DCXX_FLAGS=... -DLINK_FLAGS=...
file(REMOVE_RECURSE "${WORK_DIR}")
execute_process(COMMAND ${CMAKE_COMMAND} --install "${BUILD_DIR}" --prefix "${WORK_DIR}/prefix"
                RESULT_VARIABLE rc OUTPUT_QUIET)
if(rc)
  message(FATAL_ERROR "install failed: ${rc}")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} -S "${SOURCE_DIR}" -B "${WORK_DIR}/build"
                        -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix -DCMAKE_BUILD_TYPE=Release
                        "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}"
                        "-DCMAKE_CXX_FLAGS=${CXX_FLAGS}" "-DCMAKE_EXE_LINKER_FLAGS=${LINK_FLAGS}"
                RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "configure failed: ${rc}")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} --build "${WORK_DIR}/build" RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "build failed: ${rc}")
endif()
execute_process(COMMAND "${WORK_DIR}/build/conformance_test" --gtest_brief=1
                        "--gtest_output=xml:${WORK_DIR}/conformance_test.xml"
                RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "the example's conformance suite failed: ${rc}")
endif()
# Every registered test ran: the catalog and the properties, none skipped.
file(READ "${WORK_DIR}/conformance_test.xml" xml)
string(REGEX MATCH "<testsuites tests=\"([0-9]+)\" failures=\"0\" disabled=\"0\" errors=\"0\"" head
       "${xml}")
if(NOT head OR CMAKE_MATCH_1 LESS 40)
  message(FATAL_ERROR "unexpected test counts in the XML report: ${head}")
endif()
string(FIND "${xml}" "<skipped" skipped)
if(NOT skipped EQUAL -1)
  message(FATAL_ERROR "some conformance tests of the example were skipped")
endif()
message(STATUS "examples/gtest: ${CMAKE_MATCH_1} conformance tests passed")
