// profile_test.cpp - the per-op profiler behind `frugal bench --profile`: nothing is counted while
// it is off, an op inside another op counts once (the outer one owns the time), take() resets.
#include <doctest/doctest.h>

#include <thread>

#include "util/profile.hpp"

namespace profile = frugal::profile;

TEST_CASE("profile: off counts nothing; nested ops count once; take() resets" * doctest::timeout(10)) {
    profile::take();
    { const profile::scope s(profile::op::matmul); }
    CHECK(profile::take().calls[size_t(profile::op::matmul)] == 0);

    profile::enable(true);
    {
        const profile::scope outer(profile::op::attention);
        const profile::scope inner(profile::op::matmul); // e.g. a GEMM inside attention
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    { const profile::scope s(profile::op::matmul); }
    profile::enable(false);
    const auto t = profile::take();
    CHECK(t.calls[size_t(profile::op::attention)] == 1);
    CHECK(t.seconds[size_t(profile::op::attention)] >= 0.002);
    CHECK(t.calls[size_t(profile::op::matmul)] == 1); // only the one outside attention
    CHECK(profile::take().calls[size_t(profile::op::attention)] == 0);

    // a scope opened while on and closed while off still restores the nesting
    profile::enable(true);
    {
        const profile::scope s(profile::op::norm);
        profile::enable(false);
    }
    profile::enable(true);
    { const profile::scope s(profile::op::rope); }
    profile::enable(false);
    CHECK(profile::take().calls[size_t(profile::op::rope)] == 1);
    CHECK(profile::name(profile::op::moe_routing) == "moe_routing");
}
