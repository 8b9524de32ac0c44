// Settings a test run takes from the environment.
#pragma once

#include <algorithm>
#include <cstdlib>

namespace bnoracle::testing_env {

// Generated cases per property for tests in which every case must pass: BNORACLE_PROPERTY_CASES
// when set (CI's sanitizer pass samples fewer), else `otherwise`. Tests that look for the first
// failing case keep their own count, which the catch depends on.
inline int property_cases(int otherwise = 100) {
  if (const char* env = std::getenv("BNORACLE_PROPERTY_CASES"); env != nullptr && *env != '\0') {
    return std::max(1, std::atoi(env));
  }
  return otherwise;
}

}  // namespace bnoracle::testing_env
