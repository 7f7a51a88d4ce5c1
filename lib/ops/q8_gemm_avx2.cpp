// q8_gemm_avx2.cpp - the q8 prefill path's kernel (q8_gemm.hpp) on AVX2, for x86-64 CPUs without
// AVX-512 VNNI. Built for baseline x86-64 with the kernel under a target attribute; q8_gemm.cpp
// hands it out only where CPUID reports AVX2.
//
// vpmaddubsw multiplies the activations' u8 (qx + 128) by s8 weight quants and adds neighbouring
// products into int16 lanes, saturating past 32767; vpmaddwd then widens those into int32. With
// 4- and 5-bit quants no int16 sum reaches that: a run of `span` groups (4 products per lane
// pair each) stays within 2 · 255 · max|q| · span <= 32767, so every block sum is still exact in
// int32, as on AVX-512:
//   Q4_0: q − 8 in [−8, 7], span 8 (one run per block); Q5_0: q − 16 in [−16, 15], span 4;
//   Q4_K and Q4_1: q in [0, 15], span 4; Q5_K and Q5_1: q in [0, 31], span 2; Q6_K: q − 32 in
//   [−32, 31], span 2, each run widened by vpmaddwd against its half-block's int8 scale sc
//   instead of 1 (llama.cpp's Σ sc · Σ q · x).
// Q8_0 is not taken without AVX-VNNI: its 8-bit quants would have to be split in two to stay
// clear of saturation, twice the vpmaddubsw (measured at 0.7× the f32 path on a Zen 3 EPYC), so
// it stays on the f32 path, which is the same arithmetic.
// Layout per (tile of 8 columns, block of 32): the quants [group g < 8][column c < 8][4 quants]
// (256 bytes), then the 8 columns' scales dw (f32), corrections −128 · Σ q (int32; Q6_K:
// −128 · Σ sc · Σ q over the halves) and 32 bytes for offsets mw (f32: Q4_K, Q5_K, Q4_1, Q5_1) or the
// halves' scales sc (int8 [2][8], Q6_K): 352 bytes.
//
// The kernel's code is in q8_gemm_avx2_kernels.hpp, built here twice: for AVX2, and for AVX2 with
// AVX-VNNI (vpdpbusd in place of the vpmaddubsw runs; Q8_0 taken too).
#include "ops/q8_gemm.hpp"

#if defined(__x86_64__)

#include <immintrin.h>

#include <algorithm>
#include <type_traits>

#define FRUGAL_AVX2 __attribute__((target("avx2,fma,f16c")))
#define FRUGAL_AVX2_NS avx2
#define FRUGAL_AVX2_VNNI 0
#include "ops/q8_gemm_avx2_kernels.hpp"
#undef FRUGAL_AVX2
#undef FRUGAL_AVX2_NS
#undef FRUGAL_AVX2_VNNI

#define FRUGAL_AVX2 __attribute__((target("avx2,fma,f16c,avxvnni")))
#define FRUGAL_AVX2_NS avx2_vnni
#define FRUGAL_AVX2_VNNI 1
#include "ops/q8_gemm_avx2_kernels.hpp"
#undef FRUGAL_AVX2
#undef FRUGAL_AVX2_NS
#undef FRUGAL_AVX2_VNNI

namespace frugal::ops::q8::detail {
namespace {

// Without VNNI, the 8-bit quants of Q8_0, IQ4_NL and IQ4_XS would saturate vpmaddubsw's int16 pairs.
constexpr bool takes_2_to_6_bits(dtype t) {
    return supports(t) && t != dtype::q8_0 && t != dtype::iq4_nl && t != dtype::iq4_nl_repacked && t != dtype::iq4_xs;
}
constexpr kernel k_avx2_kernel{"avx2",          avx2::q8_chunk,        takes_2_to_6_bits, avx2::k_tiles * avx2::k_cols,
                               avx2::k_scratch_per_block, nullptr, avx2::gemm_from};
// Crossovers not measured for this build: the default (matmul_context::small_batch) serves it.
constexpr kernel k_avx2_vnni_kernel{"avx2-vnni", avx2_vnni::q8_chunk, supports, avx2_vnni::k_tiles * avx2_vnni::k_cols,
                                    avx2_vnni::k_scratch_per_block, nullptr, nullptr};

} // namespace

const kernel * avx2_chunk() { return &k_avx2_kernel; }
const kernel * avx2_vnni_chunk() { return &k_avx2_vnni_kernel; }

} // namespace frugal::ops::q8::detail

#else

namespace frugal::ops::q8::detail {
const kernel * avx2_chunk() { return nullptr; }
const kernel * avx2_vnni_chunk() { return nullptr; }
} // namespace frugal::ops::q8::detail

#endif
