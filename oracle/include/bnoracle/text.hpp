// Text that comes from outside bnoracle — a kernel's name, version and messages, a file name —
// made safe for the reports, which must stay well-formed whatever a kernel writes.
#pragma once

#include <string>
#include <string_view>

namespace bnoracle {

// `s` with every byte sequence that is not well-formed UTF-8 (stray continuation bytes, truncated
// or overlong sequences, surrogates, code points above U+10FFFF) replaced by U+FFFD, one
// replacement per maximal ill-formed subpart as Unicode recommends. Valid text is returned as is.
[[nodiscard]] std::string valid_utf8(std::string_view s);

// Whether `s` is well-formed UTF-8.
[[nodiscard]] bool is_valid_utf8(std::string_view s);

}  // namespace bnoracle
