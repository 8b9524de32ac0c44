// bnoracle.check's binding (check.cpp): the conformance suite against a Python kernel.
#pragma once

#include "bnoracle/error_model.hpp"

#include <pybind11/pybind11.h>

#include <string>

namespace bnoracle {

// The level a name gives; ValueError naming the three otherwise (module.cpp).
[[nodiscard]] accuracy_level level_named(const std::string& s);

void bind_check(pybind11::module_& m);

}  // namespace bnoracle
