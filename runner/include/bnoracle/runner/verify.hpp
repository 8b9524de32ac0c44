// The former spelling of <bnoracle/verify.hpp>, kept for programs written against it.
#pragma once

#include "bnoracle/verify.hpp"
