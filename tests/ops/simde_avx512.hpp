// simde_avx512.hpp - SIMD Everywhere's portable AVX-512 under the Intel names, for the tests that
// compile frugal's AVX-512 kernel headers on CPUs without AVX-512 (quant_avx512_test,
// q8_gemm_test), with the fixes SIMDe 0.7.4 (Debian 12) needs. Include before the kernel header.
#pragma once

#include <cstdint>
#include <cstring>

#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>
#include <simde/x86/f16c.h>

// SIMDe 0.7.4 declares this alias with the mask variant's four parameters.
#undef _mm512_madd_epi16
#define _mm512_madd_epi16(a, b) simde_mm512_madd_epi16(a, b)

// SIMDe 0.7.4 lacks this one: lane by lane, rounding to nearest as the instruction does.
inline simde__m512 frugal_test_cvtepi32_ps(simde__m512i a) {
    const simde__m512i_private in = simde__m512i_to_private(a);
    simde__m512_private out;
    for (int i = 0; i < 16; ++i) out.f32[i] = float(in.i32[i]);
    return simde__m512_from_private(out);
}
#define _mm512_cvtepi32_ps frugal_test_cvtepi32_ps

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
    int8_t in[16];
    std::memcpy(in, &a, sizeof in);
    simde__m512i_private out;
    for (int i = 0; i < 16; ++i) out.i32[i] = in[i];
    return simde__m512i_from_private(out);
}
#define _mm512_cvtepi8_epi32 frugal_test_cvtepi8_epi32
