// q8_gemm_avx512.cpp - the q8 prefill kernel (q8_gemm_avx512.hpp) built with native AVX-512
// instructions under a target attribute (the file is built for baseline x86-64); q8_gemm.cpp
// hands it out only where CPUID and the OS report AVX-512 F/BW/VNNI.
#include "ops/q8_gemm.hpp"
#include "ops/quant.hpp"

#if defined(__x86_64__)

// GCC 12's AVX-512 headers trip -W(maybe-)uninitialized once inlined (see quant_avx512.cpp).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#define FRUGAL_AVX512 __attribute__((target("avx512f,avx512bw,avx512vnni,avx2,fma,f16c")))
#define FRUGAL_AVX512_NS frugal::ops::q8::avx512
#include "ops/q8_gemm_avx512.hpp"

namespace frugal::ops::q8::detail {
namespace {
// Where packing pays off: the row kernels (matmul_rows) read each weight row once for all the
// activation rows but multiply at a few tokens' rate, while a GEMM call packs every weight row
// and then multiplies at a tile's. Measured on Zen 5, 2 threads, whole files, pp N t/s rows /
// packed. With the AVX-512 row loop batched over up to 4 activation rows (Q8_0, Q4_0, Q5_0):
// 1.5B Qwen2 Q4_0 at 6 rows 113-114 / 105-107, at 7 117-120 / 114-117, at 8 122-124 / 151-154;
// Q8_0 at 7 102-105 / 99, at 8 107-112 / 118-121; deepseek2-lite6 Q8_0 at 7 127-129 / 125, at 8
// alike. Q4_K and Q5_K, batched the same way: Q4_K_M (Q4_K with Q6_K, which keeps its own) at 12
// rows 149-152 / 131-134, at 14 142-144 / 138-139, at 16 147-154 / 163-164. Q6_K, batched too
// (its packed GEMM is the slowest of these, its halves' scales multiplied in int32): 1.5B Q6_K
// at 16 164 / 110-114, at 24 156-163 / 133-141, at 32 166-168 / 165-192. On Zen 4 (2 rounds each),
// with the type's own row loop batched: 1.5B Q3_K_M (its Q3_K tensors) at 6 rows 42-72 / 38-62,
// at 8 86 / 85, at 12 88-91 / 103; Q2_K at 6 70-79 / 59-65, at 8 81-82 / 82-94, at 12 82-86 /
// 102-105; IQ4_XS at 4 53-54 / 58-62, at 8 55-57 / 80-94. The repacked layouts on Zen 4 (their
// row loops take four blocks per load; 2 rounds each, pp N t/s rows / packed): Q4_1 at 8 104-107
// / 72-78, at 12 104-107 / 105-107, at 16 111-115 / 127; Q5_1 at 10 92 / 74-78, at 12 95-96 /
// 92-94, at 16 100 / 109-112; Q5_0 at 8 85-87 / 76-78, at 10 88-89 / 83, at 12 92-94 / 103-104;
// IQ4_NL at 8 95-99 / 84-93, at 10 97-102 / 98-103; Q4_0 at 8 95-98 / 94-96, at 10 98-100 /
// 98-100, at 12 102-103 / 122-127. Zen 4 runs each zmm operation in two halves, which slows the
// row loops more than the packed kernel: there Q4_K (1.5B Q4_K_S) at 8 80-84 / 90-91, at 10 84 /
// 93-97, at 12 85-91 / 116-120; Q5_K at 12 78-80 / 81-98; Q6_K at 8 75-78 / 45-61, at 12 83-84 /
// 74-85, at 16 80-88 / 98-107, at 24 87 / 134-137.
int64_t gemm_from(dtype t) {
    const bool halves = frugal::ops::detail::avx512_in_halves();
    if (t == dtype::q4_1_repacked || t == dtype::q5_1_repacked) return 12;
    if (t == dtype::q5_0_repacked) return 11;
    if (t == dtype::iq4_nl_repacked) return 10;
    if (t == dtype::iq4_xs) return 4;
    if (t == dtype::q2_k || t == dtype::q3_k) return 8;
    if (half_scales(t)) return halves ? 12 : 24;
    if (super_blocks(t)) return halves ? 8 : 16;
    return 8;
}
constexpr kernel k_avx512_kernel{"avx512-vnni", avx512::q8_chunk, supports, k_chunk_cols, avx512::k_scratch_per_block,
                                 avx512::quantize_activations, gemm_from};
}
const kernel * avx512_chunk() { return &k_avx512_kernel; }
} // namespace frugal::ops::q8::detail

#else

namespace frugal::ops::q8::detail {
const kernel * avx512_chunk() { return nullptr; }
} // namespace frugal::ops::q8::detail

#endif
