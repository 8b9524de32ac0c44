// The whole bnoracle conformance suite, catalog and properties, as GoogleTest tests of
// my_batch_norm: one line. Run `./conformance_test --gtest_list_tests` to see the tests.
#include "my_batch_norm.hpp"

#include <bnoracle/gtest.hpp>

#include <memory>

BNORACLE_CONFORMANCE_SUITE(MyBatchNorm, [] { return std::make_unique<example::my_batch_norm>(); });
