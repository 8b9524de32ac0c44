// The former spelling of <bnoracle/identify.hpp>, kept for programs written against it.
#pragma once

#include "bnoracle/identify.hpp"
