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

// True when oneDNN's int8 GEMM sums pairs of u8·s8 products in int16 (vpmaddubsw: AVX2 or
// AVX-512 without VNNI), so a pair above 32767 saturates; false with VNNI or AMX.
inline bool int8_pairs_saturate() {
    const auto isa = static_cast<unsigned>(dnnl::get_effective_cpu_isa());
    auto has = [&](dnnl::cpu_isa want) { return (isa & unsigned(want)) == unsigned(want); };
    return !(has(dnnl::cpu_isa::avx512_core_vnni) || has(dnnl::cpu_isa::avx2_vnni));
}

} // namespace frugal::ops::dnnl_compat
