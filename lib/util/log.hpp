// log.hpp - one log sink for the library: the user's callback if set, else stderr at WARN and up.
// FRUGAL_LOG=debug|info|warn|error overrides the stderr threshold. Level is checked before
// formatting, so disabled messages cost a branch.
#pragma once

#include <fmt/format.h>

namespace frugal::log {

enum class level : int32_t { debug = 0, info = 1, warn = 2, error = 3 };
using sink_fn = void (*)(int32_t level, const char * message, void * user_data);

bool enabled(level l) noexcept;
void write(level l, const std::string & message) noexcept;
// Swaps the sink atomically (fn == nullptr restores stderr).
void set_sink(sink_fn fn, void * user_data, level min_level) noexcept;

} // namespace frugal::log

#define FRUGAL_LOG_AT(lvl, ...)                                                   \
    do {                                                                          \
        if (::frugal::log::enabled(lvl)) ::frugal::log::write(lvl, fmt::format(__VA_ARGS__)); \
    } while (0)
#define FRUGAL_LOG_DEBUG(...) FRUGAL_LOG_AT(::frugal::log::level::debug, __VA_ARGS__)
#define FRUGAL_LOG_INFO(...) FRUGAL_LOG_AT(::frugal::log::level::info, __VA_ARGS__)
#define FRUGAL_LOG_WARN(...) FRUGAL_LOG_AT(::frugal::log::level::warn, __VA_ARGS__)
#define FRUGAL_LOG_ERROR(...) FRUGAL_LOG_AT(::frugal::log::level::error, __VA_ARGS__)
