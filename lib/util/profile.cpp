#include "util/profile.hpp"

namespace frugal::profile {

std::atomic<bool> detail::g_enabled{false};

detail::thread_totals & detail::mine() {
    thread_local thread_totals t;
    return t;
}

std::string_view name(op o) {
    switch (o) {
    case op::embed: return "embed";
    case op::norm: return "norm";
    case op::matmul: return "matmul";
    case op::rope: return "rope";
    case op::attention: return "attention";
    case op::activation: return "activation";
    case op::moe_routing: return "moe_routing";
    case op::residual: return "residual";
    case op::count: break;
    }
    return "?";
}

totals take() {
    auto & t = detail::mine();
    totals out{t.seconds, t.calls};
    t.seconds = {};
    t.calls = {};
    return out;
}

} // namespace frugal::profile
