// dnnl_compat.hpp - the one place where oneDNN v2 (Debian 12 ships 2.6.3) and v3 API differences
// live. Everything else calls these helpers.
#pragma once

#include <oneapi/dnnl/dnnl.hpp>

namespace frugal::ops::dnnl_compat {

inline dnnl::matmul::primitive_desc matmul_pd(const dnnl::engine & eng, const dnnl::memory::desc & src,
                                              const dnnl::memory::desc & weights, const dnnl::memory::desc & dst,
                                              const dnnl::primitive_attr & attr = {}) {
#if DNNL_VERSION_MAJOR >= 3
    return dnnl::matmul::primitive_desc(eng, src, weights, dst, attr);
#else
    return dnnl::matmul::primitive_desc(dnnl::matmul::desc(src, weights, dst), attr, eng);
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

// K padded to the layout's blocks when the [K, N] weight descriptor md is in the panels of
// ops/gemm_pack.hpp (oneDNN's F32 BA16a64b or BF16 BA16a64b2a: 64 columns per panel, panels one
// after another), else 0.
inline int64_t gemm_panels_padded_k(const dnnl::memory::desc & md) {
    using dims = dnnl::memory::dims;
    using dt = dnnl::memory::data_type;
#if DNNL_VERSION_MAJOR >= 3
    if (md.get_format_kind() != dnnl::memory::format_kind::blocked || md.get_ndims() != 2) return 0;
    const dims blks = md.get_inner_blks(), idxs = md.get_inner_idxs();
    const dims strides = md.get_strides(), padded = md.get_padded_dims();
    const dt type = md.get_data_type();
#else
    const dnnl_memory_desc_t & d = md.data;
    if (d.format_kind != dnnl_blocked || d.ndims != 2 || d.offset0 != 0) return 0;
    const auto & b = d.format_desc.blocking;
    const dims blks(b.inner_blks, b.inner_blks + b.inner_nblks), idxs(b.inner_idxs, b.inner_idxs + b.inner_nblks);
    const dims strides(b.strides, b.strides + 2), padded(d.padded_dims, d.padded_dims + 2);
    const dt type = static_cast<dt>(d.data_type);
#endif
    int64_t per_word; // K values per 32-bit word
    if (type == dt::f32 && blks == dims{16, 64} && idxs == dims{0, 1}) per_word = 1;
    else if (type == dt::bf16 && blks == dims{16, 64, 2} && idxs == dims{0, 1, 0}) per_word = 2;
    else return 0;
    const int64_t k_padded = padded[0];
    const bool panels = k_padded % (16 * per_word) == 0 && padded[1] % 64 == 0 && strides[0] == 16 * 64 * per_word &&
                        strides[1] == k_padded * 64;
    return panels ? k_padded : 0;
}

} // namespace frugal::ops::dnnl_compat
