// bf16_avx512.hpp - AVX512-BF16 conversions shared by the panel writer (gemm_pack.cpp) and the
// AMX kernel's activation packer (amx_gemm.cpp). Include from x86-64 code only, after
// <immintrin.h>; call only where the CPU has AVX512-BF16.
#pragma once

#include <immintrin.h>

#define FRUGAL_AVX512_BF16 __attribute__((target("avx512f,avx512bf16")))

namespace frugal::ops::bf16_avx512 {

// 32 floats (f0: the first 16) as 16 words of BF16 pairs, value 2j in word j's low half;
// rounded to nearest even, F32 denormals to zeros.
FRUGAL_AVX512_BF16 inline __m512i pairs(__m512 f0, __m512 f1) { return (__m512i)_mm512_cvtne2ps_pbh(f1, f0); }

// 16 BF16 values back in F32: each shifted into the top half of its float.
FRUGAL_AVX512_BF16 inline __m512 widen(__m256i h) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

// The same 32 floats as hi = pairs(f0, f1) and lo, the BF16 pairs of what rounding to hi left
// (f − hi, exact in F32): hi + lo carries 16 significant bits, all of an F16 value's 11.
FRUGAL_AVX512_BF16 inline void split(__m512 f0, __m512 f1, __m512i & hi, __m512i & lo) {
    hi = pairs(f0, f1);
    const __m512 h0 = widen(_mm512_castsi512_si256(hi)), h1 = widen(_mm512_extracti64x4_epi64(hi, 1));
    lo = pairs(_mm512_sub_ps(f0, h0), _mm512_sub_ps(f1, h1));
}

} // namespace frugal::ops::bf16_avx512
