#include "bnoracle/output.hpp"

#include <stdexcept>
#include <string>

namespace bnoracle {

output_id output_named(std::string_view name) {
  const std::optional<output_id> id = parse_output(name);
  if (!id) throw std::out_of_range("no output named '" + std::string(name) + "'");
  return *id;
}

}  // namespace bnoracle
