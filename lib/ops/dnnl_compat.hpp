// dnnl_compat.hpp - the one place where oneDNN v2 (Debian 12 ships 2.6.3) and v3 API differences
// live. Everything else calls these helpers.
#pragma once

#include <oneapi/dnnl/dnnl.hpp>

namespace frugal::ops::dnnl_compat {

inline dnnl::matmul::primitive_desc matmul_pd(const dnnl::engine & eng, const dnnl::memory::desc & src,
                                              const dnnl::memory::desc & weights, const dnnl::memory::desc & dst) {
#if DNNL_VERSION_MAJOR >= 3
    return dnnl::matmul::primitive_desc(eng, src, weights, dst);
#else
    return dnnl::matmul::primitive_desc(dnnl::matmul::desc(src, weights, dst), eng);
#endif
}

// True when oneDNN will run BF16 matmuls natively (AVX512-BF16 or AMX), not emulated.
inline bool has_native_bf16() {
    const auto isa = static_cast<unsigned>(dnnl::get_effective_cpu_isa());
    const auto bf16 = static_cast<unsigned>(dnnl::cpu_isa::avx512_core_bf16);
    return (isa & bf16) == bf16;
}

} // namespace frugal::ops::dnnl_compat
