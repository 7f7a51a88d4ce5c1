#include "util/log.hpp"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

namespace frugal::log {
namespace {

struct sink_state {
    sink_fn fn;
    void * user_data;
    level min_level;
};

level stderr_threshold() {
    static const level lvl = [] {
        const char * env = std::getenv("FRUGAL_LOG");
        if (!env) return level::warn;
        if (!std::strcmp(env, "debug")) return level::debug;
        if (!std::strcmp(env, "info")) return level::info;
        if (!std::strcmp(env, "error")) return level::error;
        return level::warn;
    }();
    return lvl;
}

std::mutex g_mutex;  // guards the (fn, user_data) pair so a swap is never seen half-done
sink_state g_sink{nullptr, nullptr, level::warn};
std::atomic<int32_t> g_min_level{-1}; // -1: stderr threshold applies

} // namespace

bool enabled(level l) noexcept {
    const int32_t m = g_min_level.load(std::memory_order_relaxed);
    return int32_t(l) >= (m < 0 ? int32_t(stderr_threshold()) : m);
}

void write(level l, const std::string & message) noexcept {
    sink_state s;
    {
        std::lock_guard lock(g_mutex);
        s = g_sink;
    }
    if (s.fn) {
        if (l >= s.min_level) s.fn(int32_t(l), message.c_str(), s.user_data);
        return;
    }
    static const char * names[] = {"debug", "info", "warn", "error"};
    std::fprintf(stderr, "frugal %s: %s\n", names[int(l) & 3], message.c_str());
}

void set_sink(sink_fn fn, void * user_data, level min_level) noexcept {
    std::lock_guard lock(g_mutex);
    g_sink = {fn, user_data, min_level};
    g_min_level.store(fn ? int32_t(min_level) : -1, std::memory_order_relaxed);
}

} // namespace frugal::log
