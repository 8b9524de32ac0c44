// The former spelling of <bnoracle/runner.hpp>, kept for programs written against it.
#pragma once

#include "bnoracle/runner.hpp"
