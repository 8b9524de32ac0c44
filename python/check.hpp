// bnoracle.check's binding (check.cpp): the conformance suite against a Python kernel.
#pragma once

#include <pybind11/pybind11.h>

namespace bnoracle {

void bind_check(pybind11::module_& m);

}  // namespace bnoracle
