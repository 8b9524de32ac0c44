#include "bnoracle/text.hpp"

#include <cstddef>

namespace bnoracle {

namespace {

// What a lead byte announces: the sequence length (0 for a byte that cannot start one) and the
// range of the second byte (Unicode 15, table 3-7: no overlong forms, no surrogates, nothing
// above U+10FFFF). Later continuation bytes are always 0x80..0xBF.
struct lead_byte {
  std::size_t length = 0;
  unsigned char lo = 0x80;
  unsigned char hi = 0xBF;
};

lead_byte lead(unsigned char b0) {
  if (b0 < 0x80) return {1, 0, 0};
  if (b0 >= 0xC2 && b0 <= 0xDF) return {2, 0x80, 0xBF};
  if (b0 == 0xE0) return {3, 0xA0, 0xBF};
  if (b0 == 0xED) return {3, 0x80, 0x9F};
  if (b0 >= 0xE1 && b0 <= 0xEF) return {3, 0x80, 0xBF};
  if (b0 == 0xF0) return {4, 0x90, 0xBF};
  if (b0 >= 0xF1 && b0 <= 0xF3) return {4, 0x80, 0xBF};
  if (b0 == 0xF4) return {4, 0x80, 0x8F};
  return {};
}

// How many bytes at s[i] continue the sequence of lead byte `l` correctly, counting the lead.
std::size_t valid_prefix(std::string_view s, std::size_t i, const lead_byte& l) {
  std::size_t k = 1;
  while (k < l.length && i + k < s.size()) {
    const auto b = static_cast<unsigned char>(s[i + k]);
    const unsigned char lo = k == 1 ? l.lo : 0x80;
    const unsigned char hi = k == 1 ? l.hi : 0xBF;
    if (b < lo || b > hi) break;
    ++k;
  }
  return k;
}

// Length of the well-formed sequence at s[i], or 0 when it is ill-formed.
std::size_t sequence_length(std::string_view s, std::size_t i) {
  const lead_byte l = lead(static_cast<unsigned char>(s[i]));
  if (l.length <= 1) return l.length;
  return valid_prefix(s, i, l) == l.length ? l.length : 0;
}

// Bytes of the maximal ill-formed subpart at s[i] (at least 1): a lead byte and the continuation
// bytes that were still valid after it.
std::size_t ill_formed_length(std::string_view s, std::size_t i) {
  const lead_byte l = lead(static_cast<unsigned char>(s[i]));
  return l.length == 0 ? 1 : valid_prefix(s, i, l);
}

}  // namespace

bool is_valid_utf8(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    const std::size_t n = sequence_length(s, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

std::string valid_utf8(std::string_view s) {
  if (is_valid_utf8(s)) return std::string(s);
  std::string out;
  out.reserve(s.size() + 8);
  for (std::size_t i = 0; i < s.size();) {
    const std::size_t n = sequence_length(s, i);
    if (n > 0) {
      out.append(s.substr(i, n));
      i += n;
      continue;
    }
    out += "\xEF\xBF\xBD";  // U+FFFD REPLACEMENT CHARACTER
    i += ill_formed_length(s, i);
  }
  return out;
}

}  // namespace bnoracle
