// quant_avx512.cpp - the AVX-512 (F, BW, VNNI) kernels of quant_avx512_kernels.hpp, built with
// native instructions under a target attribute (the file is built for baseline x86-64); quant.cpp
// only calls them after checking the CPU and the OS's ZMM state support. Types without an
// AVX-512 kernel keep the AVX2 table.
#include "ops/quant_kernels.hpp"

#if defined(__x86_64__)

// GCC 12's AVX-512 headers build "undefined" pass-through operands (insert, extract, convert)
// as `__m512 __Y = __Y;`, which -W(maybe-)uninitialized reports once inlined here: a false
// positive in the compiler's own header, silenced for this file only.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#define FRUGAL_AVX512 __attribute__((target("avx512f,avx512bw,avx512vnni,avx2,fma,f16c")))
#define FRUGAL_AVX512_NS frugal::ops::detail::avx512
#include "ops/quant_avx512_kernels.hpp"

namespace frugal::ops::detail {
namespace {

// The AVX2 set with an AVX-512 row loop (and its one-row case as the single dot, and its batch of
// up to 4 activation rows) in place: their results are bit-identical to the AVX2 ones. A few
// activation rows go through the batched row loop over runs of weight rows (quant.cpp's
// product_rows), not through the AVX2 batched dot (256 bits wide, and below 4 rows a dot per
// weight row that rebuilt the activation's tables every call). 1.5B Qwen2 on Zen 5, t/s, AVX2
// batched dot → the row loop once per activation row → batched: Q4_0 pp2 37-39 → 70 → 87-91,
// pp4 54-55 → 83-85 → 103; Q8_0 pp2 31-34 → 46-47 → 52-54, pp4 60 → 68-70 → 79-80.
// A repacked type without an AVX2 set (Q4_1, Q5_1) starts from its stored type's: the same
// activation quantizer, and the scalar dequantizer of its own layout.
template <auto dot_rows, auto dot_rows_batch = nullptr>
kernels with_avx512_row_loop(dtype t) {
    const bool own_set = avx2_kernels(t) != nullptr;
    kernels k = *avx2_kernels(own_set ? t : stored_type(t));
    if (!own_set) k.dequantize = nullptr; // that one reads the stored layout: quant.cpp's select() takes the scalar one
    k.dot = avx512::one_row<dot_rows>;
    k.dot_rows = dot_rows;
    k.dot_rows_batch = dot_rows_batch;
    k.dot_batch = nullptr;
    return k;
}

// A repacked layout's set: the AVX-512 repacked loop.
template <dtype T>
kernels repacked_row_loop() {
    return with_avx512_row_loop<avx512::dot_rows_repacked<T>, avx512::dot_rows_repacked_batch<T>>(T);
}

} // namespace

const kernels * avx512_kernels(dtype t) {
    static const kernels q8_0 =
        with_avx512_row_loop<avx512::dot_rows_32<dtype::q8_0>, avx512::dot_rows_32_batch<dtype::q8_0>>(dtype::q8_0);
    static const kernels q4_0 =
        with_avx512_row_loop<avx512::dot_rows_32<dtype::q4_0>, avx512::dot_rows_32_batch<dtype::q4_0>>(dtype::q4_0);
    static const kernels q4_0_repacked = repacked_row_loop<dtype::q4_0_repacked>();
    static const kernels q5_0_repacked = repacked_row_loop<dtype::q5_0_repacked>();
    static const kernels iq4_nl_repacked = repacked_row_loop<dtype::iq4_nl_repacked>();
    static const kernels q4_1_repacked = repacked_row_loop<dtype::q4_1_repacked>();
    static const kernels q5_1_repacked = repacked_row_loop<dtype::q5_1_repacked>();
    static const kernels q5_0 =
        with_avx512_row_loop<avx512::dot_rows_32<dtype::q5_0>, avx512::dot_rows_32_batch<dtype::q5_0>>(dtype::q5_0);
    static const kernels q4_1 =
        with_avx512_row_loop<avx512::dot_rows_32<dtype::q4_1>, avx512::dot_rows_32_batch<dtype::q4_1>>(dtype::q4_1);
    static const kernels q5_1 =
        with_avx512_row_loop<avx512::dot_rows_32<dtype::q5_1>, avx512::dot_rows_32_batch<dtype::q5_1>>(dtype::q5_1);
    static const kernels iq4_nl =
        with_avx512_row_loop<avx512::dot_rows_32<dtype::iq4_nl>, avx512::dot_rows_32_batch<dtype::iq4_nl>>(dtype::iq4_nl);
    static const kernels q4_k =
        with_avx512_row_loop<avx512::dot_rows_q45_k<false>, avx512::dot_rows_q45_k_batch<false>>(dtype::q4_k);
    static const kernels q5_k =
        with_avx512_row_loop<avx512::dot_rows_q45_k<true>, avx512::dot_rows_q45_k_batch<true>>(dtype::q5_k);
    static const kernels q6_k = with_avx512_row_loop<avx512::dot_rows_q6_k, avx512::dot_rows_q6_k_batch>(dtype::q6_k);
    static const kernels q2_k =
        with_avx512_row_loop<avx512::dot_rows_q23_k<false>, avx512::dot_rows_q23_k_batch<false>>(dtype::q2_k);
    static const kernels q3_k =
        with_avx512_row_loop<avx512::dot_rows_q23_k<true>, avx512::dot_rows_q23_k_batch<true>>(dtype::q3_k);
    static const kernels iq4_xs = with_avx512_row_loop<avx512::dot_rows_iq4_xs, avx512::dot_rows_iq4_xs_batch>(dtype::iq4_xs);
    switch (t) {
    case dtype::q8_0: return &q8_0;
    case dtype::q4_0: return &q4_0;
    case dtype::q4_0_repacked: return &q4_0_repacked;
    case dtype::q5_0: return &q5_0;
    case dtype::q5_0_repacked: return &q5_0_repacked;
    case dtype::q4_1: return &q4_1;
    case dtype::q5_1: return &q5_1;
    case dtype::iq4_nl: return &iq4_nl;
    case dtype::iq4_nl_repacked: return &iq4_nl_repacked;
    case dtype::q4_1_repacked: return &q4_1_repacked;
    case dtype::q5_1_repacked: return &q5_1_repacked;
    case dtype::q4_k: return &q4_k;
    case dtype::q5_k: return &q5_k;
    case dtype::q6_k: return &q6_k;
    case dtype::q2_k: return &q2_k;
    case dtype::q3_k: return &q3_k;
    case dtype::iq4_xs: return &iq4_xs;
    default: return nullptr;
    }
}

} // namespace frugal::ops::detail

#else

namespace frugal::ops::detail {
const kernels * avx512_kernels(dtype) { return nullptr; }
} // namespace frugal::ops::detail

#endif
