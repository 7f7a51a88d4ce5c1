// text.hpp - small string helpers shared by the runtime and the ops (ASCII only).
#pragma once

#include <cctype>
#include <string>
#include <string_view>

namespace frugal {

// s with ASCII letters in lower case (other bytes, UTF-8 included, unchanged).
inline std::string to_lower(std::string_view s) {
    std::string out(s);
    for (auto & c : out) c = char(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

} // namespace frugal
