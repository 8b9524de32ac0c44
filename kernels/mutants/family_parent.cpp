// family_parent: the unmutated family parent of the mutation catalog (family_parent.hpp with
// `family_mutation::none`). A correct float32 kernel of layer, RMS, group and instance norm that
// must pass `bnoracle check` at the lenient level; every family mutant is it plus one deviation.
#include "family_parent.hpp"

BNM_FAMILY_KERNEL("family_parent", none)
