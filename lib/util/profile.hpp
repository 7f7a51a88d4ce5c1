// profile.hpp - where a forward pass spends its time, per kind of op (frugal bench --profile).
// Off by default: a disabled scope costs one relaxed atomic load. When on, the outermost scope
// on a thread times its op (an op that calls another, e.g. a linear layer calling the GEMM,
// counts once) and adds to that thread's totals; forward passes run their ops from the calling
// thread, so one thread's totals describe one session's work.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <string_view>

namespace frugal::profile {

enum class op : uint8_t { embed, norm, matmul, rope, attention, activation, moe_routing, residual, count };

std::string_view name(op o);

namespace detail {
extern std::atomic<bool> g_enabled;
struct thread_totals {
    std::array<double, size_t(op::count)> seconds{};
    std::array<int64_t, size_t(op::count)> calls{};
    int depth = 0;
};
thread_totals & mine();
} // namespace detail

inline void enable(bool on) { detail::g_enabled.store(on, std::memory_order_relaxed); }

struct totals {
    std::array<double, size_t(op::count)> seconds{};
    std::array<int64_t, size_t(op::count)> calls{};
};
// This thread's totals since the last take(), which starts them again from zero.
totals take();

class scope {
public:
    explicit scope(op o) {
        if (!detail::g_enabled.load(std::memory_order_relaxed)) return;
        auto & t = detail::mine();
        entered_ = true;
        if (t.depth++ > 0) return; // inside another op: that one owns the time
        op_ = o;
        start_ = std::chrono::steady_clock::now();
        timing_ = true;
    }
    ~scope() {
        if (!entered_) return;
        auto & t = detail::mine();
        --t.depth;
        if (!timing_) return;
        t.seconds[size_t(op_)] += std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
        ++t.calls[size_t(op_)];
    }
    scope(const scope &) = delete;
    scope & operator=(const scope &) = delete;

private:
    op op_ = op::count;
    std::chrono::steady_clock::time_point start_;
    bool entered_ = false, timing_ = false;
};

} // namespace frugal::profile
