// parent: the unmutated parent of the mutation catalog (parent.hpp with `mutation::none`). A
// correct float32 kernel — the bundled `two_pass` written out with its mutation points — that
// must pass `bnoracle check` at the lenient level; every mutant is it plus one deviation.
#include "parent.hpp"

BNM_KERNEL("parent", none)
