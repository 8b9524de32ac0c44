// The former spelling of <bnoracle/files.hpp>, kept for programs written against it.
#pragma once

#include "bnoracle/files.hpp"
