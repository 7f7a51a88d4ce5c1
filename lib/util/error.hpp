// error.hpp - the runtime's exception type. Codes mirror capi/frugal.h's status values (capi maps
// them 1:1); lib/ never includes capi/, so the numbers are repeated here and pinned by a test.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

#include <fmt/format.h>

namespace frugal {

enum class status : int32_t {
    ok = 0,
    done = 1,
    invalid_argument = -1,
    out_of_memory = -2,
    io = -3,
    unsupported_model = -4,
    context_full = -5,
    cancelled = -6,
    buffer_too_small = -7,
    struct_size = -8,
    invalid_model = -9, // malformed model file
    internal = -100,
};

class error : public std::runtime_error {
public:
    error(status code, const std::string & message) : std::runtime_error(message), code_(code) {}
    status code() const noexcept { return code_; }

private:
    status code_;
};

// throw_error(status::io, "loader: cannot open {}: {}", path, strerror(errno));
template <class... Args>
[[noreturn]] void throw_error(status code, fmt::format_string<Args...> f, Args &&... args) {
    throw error(code, fmt::format(f, std::forward<Args>(args)...));
}

} // namespace frugal
