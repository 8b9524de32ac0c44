// The former spelling of <bnoracle/report.hpp>, kept for programs written against it.
#pragma once

#include "bnoracle/report.hpp"
