// simde_avx512.hpp - SIMD Everywhere's portable AVX-512 under the Intel names, for the tests that
// compile frugal's AVX-512 kernel headers on CPUs without AVX-512 (quant_avx512_test,
// q8_gemm_test, and the attention kernels in tests/common/simde_kernels.cpp), with the fixes
// SIMDe 0.7.4 (Debian 12) needs. Include before the kernel header.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

// The compiler's own header first, for the names SIMDe leaves to it (__mmask16, _MM_FROUND_*)
// when the file is built without -mavx2 (SIMDe then includes no native header itself).
#include <immintrin.h>

#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>
#include <simde/x86/f16c.h>

// SIMDe 0.7.4 declares this alias with the mask variant's four parameters.
#undef _mm512_madd_epi16
#define _mm512_madd_epi16(a, b) simde_mm512_madd_epi16(a, b)

// The conversions below, lane by lane: lane i of the result (16 lanes of ToLane) is f(lane i of
// a) (16 lanes of FromLane).
template <class To, class ToLane, class FromLane, class From, class F>
To frugal_test_lanes(From a, F f) {
    static_assert(sizeof(From) == 16 * sizeof(FromLane) && sizeof(To) == 16 * sizeof(ToLane));
    FromLane in[16];
    std::memcpy(in, &a, sizeof in);
    ToLane out[16];
    for (int i = 0; i < 16; ++i) out[i] = f(in[i]);
    To r;
    std::memcpy(&r, out, sizeof out);
    return r;
}

// SIMDe 0.7.4 lacks this one: rounding to nearest as the instruction does.
inline simde__m512 frugal_test_cvtepi32_ps(simde__m512i a) {
    return frugal_test_lanes<simde__m512, float, int32_t>(a, [](int32_t v) { return float(v); });
}
#define _mm512_cvtepi32_ps frugal_test_cvtepi32_ps

// Nor this one (vpmovdb): each int32 lane's low byte.
inline simde__m128i frugal_test_cvtepi32_epi8(simde__m512i a) {
    return frugal_test_lanes<simde__m128i, int8_t, int32_t>(a, [](int32_t v) { return int8_t(v); });
}
#define _mm512_cvtepi32_epi8 frugal_test_cvtepi32_epi8

// Nor the masked byte load (vmovdqu8 {z}): only the bytes whose mask bit is set are read, as the
// instruction reads (it does not fault past them).
inline simde__m512i frugal_test_maskz_loadu_epi8(uint64_t mask, const void * p) {
    uint8_t bytes[64] = {};
    for (int i = 0; i < 64; ++i)
        if (mask >> i & 1) bytes[i] = static_cast<const uint8_t *>(p)[i];
    simde__m512i r;
    std::memcpy(&r, bytes, sizeof r);
    return r;
}
#undef _mm512_maskz_loadu_epi8
#define _mm512_maskz_loadu_epi8 frugal_test_maskz_loadu_epi8

// Nor vpmovsxwd: 16 int16 lanes sign-extended to int32.
inline simde__m512i frugal_test_cvtepi16_epi32(simde__m256i a) {
    return frugal_test_lanes<simde__m512i, int32_t, int16_t>(a, [](int16_t v) { return int32_t(v); });
}
#define _mm512_cvtepi16_epi32 frugal_test_cvtepi16_epi32

// Nor these reductions (sequences in the compiler's header): the largest lane, the lanes' sum.
inline float frugal_test_reduce_max_ps(simde__m512 a) {
    const simde__m512_private in = simde__m512_to_private(a);
    float m = in.f32[0];
    for (int i = 1; i < 16; ++i) m = std::fmax(m, in.f32[i]);
    return m;
}
#define _mm512_reduce_max_ps frugal_test_reduce_max_ps
inline int32_t frugal_test_reduce_add_epi32(simde__m512i a) {
    const simde__m512i_private in = simde__m512i_to_private(a);
    uint32_t sum = 0; // wraps as the instructions do
    for (int i = 0; i < 16; ++i) sum += uint32_t(in.i32[i]);
    return int32_t(sum);
}
#define _mm512_reduce_add_epi32 frugal_test_reduce_add_epi32

// Nor vpmovdw: each int32 lane's low half.
inline simde__m256i frugal_test_cvtepi32_epi16(simde__m512i a) {
    return frugal_test_lanes<simde__m256i, int16_t, int32_t>(a, [](int32_t v) { return int16_t(v); });
}
#define _mm512_cvtepi32_epi16 frugal_test_cvtepi32_epi16

// Nor this one (vpgatherdd): lane i = the int32 at base + index[i] · scale.
inline simde__m512i frugal_test_i32gather_epi32(simde__m512i index, const void * base, int scale) {
    const simde__m512i_private idx = simde__m512i_to_private(index);
    simde__m512i_private out;
    for (int i = 0; i < 16; ++i)
        std::memcpy(&out.i32[i], static_cast<const char *>(base) + int64_t(idx.i32[i]) * scale, sizeof(int32_t));
    return simde__m512i_from_private(out);
}
#define _mm512_i32gather_epi32 frugal_test_i32gather_epi32

// Nor this one (vpmovsxbd): the 16 int8 of a into int32 lanes.
inline simde__m512i frugal_test_cvtepi8_epi32(simde__m128i a) {
    return frugal_test_lanes<simde__m512i, int32_t, int8_t>(a, [](int8_t v) { return int32_t(v); });
}
#define _mm512_cvtepi8_epi32 frugal_test_cvtepi8_epi32

// Nor these, used by the attention kernels (vcvtph2ps also by q8's packing): conversions, and
// masked loads and stores.
inline simde__m512i frugal_test_cvtps_epi32(simde__m512 a) { // rounding to nearest even, as MXCSR's default
    return frugal_test_lanes<simde__m512i, int32_t, float>(a, [](float v) { return int32_t(std::nearbyint(v)); });
}
#define _mm512_cvtps_epi32 frugal_test_cvtps_epi32

inline float frugal_test_cvtss_f32(simde__m512 a) { return simde__m512_to_private(a).f32[0]; }
#define _mm512_cvtss_f32 frugal_test_cvtss_f32

inline simde__m512 frugal_test_cvtph_ps(simde__m256i a) {
    return frugal_test_lanes<simde__m512, float, uint16_t>(
        a, [](uint16_t h) { return simde_mm_cvtss_f32(simde_mm_cvtph_ps(simde_mm_cvtsi32_si128(h))); });
}
#define _mm512_cvtph_ps frugal_test_cvtph_ps

inline simde__m512 frugal_test_mask_loadu_ps(simde__m512 src, simde__mmask16 k, const void * p) {
    simde__m512_private out = simde__m512_to_private(src);
    for (int i = 0; i < 16; ++i)
        if (k >> i & 1) std::memcpy(&out.f32[i], static_cast<const float *>(p) + i, sizeof(float));
    return simde__m512_from_private(out);
}
#define _mm512_mask_loadu_ps frugal_test_mask_loadu_ps
#define _mm512_maskz_loadu_ps(k, p) frugal_test_mask_loadu_ps(simde_mm512_setzero_ps(), k, p)

inline void frugal_test_mask_storeu_ps(void * p, simde__mmask16 k, simde__m512 a) {
    const simde__m512_private in = simde__m512_to_private(a);
    for (int i = 0; i < 16; ++i)
        if (k >> i & 1) std::memcpy(static_cast<float *>(p) + i, &in.f32[i], sizeof(float));
}
#define _mm512_mask_storeu_ps frugal_test_mask_storeu_ps

// Nor vpshufd on zmm: in each 128-bit lane, dword i takes that lane's dword (imm >> 2i) & 3.
inline simde__m512i frugal_test_shuffle_epi32(simde__m512i a, int imm) {
    const simde__m512i_private in = simde__m512i_to_private(a);
    simde__m512i_private out;
    for (int i = 0; i < 16; ++i) out.i32[i] = in.i32[(i & ~3) | ((imm >> (2 * (i & 3))) & 3)];
    return simde__m512i_from_private(out);
}
#undef _mm512_shuffle_epi32
#define _mm512_shuffle_epi32(a, imm) frugal_test_shuffle_epi32(a, int(imm))
