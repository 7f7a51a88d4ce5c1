// attention_avx512.cpp - the AVX-512 F attention kernels of attention_avx512_kernels.hpp, built
// with native instructions under a target attribute (the file is built for baseline x86-64);
// attention.cpp only takes them where the CPU and the OS support AVX-512 F.
#include "ops/attention_kernels.hpp"

#if defined(__x86_64__)

// GCC 12's AVX-512 headers build "undefined" pass-through operands as `__m512 __Y = __Y;`, which
// -W(maybe-)uninitialized reports once inlined (see quant_avx512.cpp).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include "ops/quant.hpp"

#define FRUGAL_AVX512 __attribute__((target("avx512f,avx2,fma,f16c")))
#define FRUGAL_AVX512_BF16 __attribute__((target("avx512f,avx512bf16,avx2,fma,f16c")))
#define FRUGAL_AVX512_NS frugal::ops::detail::attention_avx512
#include "ops/attention_avx512_kernels.hpp"

namespace frugal::ops::detail {
const attention_kernels * avx512_attention_kernels() {
    if (!avx512f_supported()) return nullptr;
    return avx512_bf16_supported() ? &attention_avx512::kernels_bf16 : &attention_avx512::kernels;
}
} // namespace frugal::ops::detail

#else

namespace frugal::ops::detail {
const attention_kernels * avx512_attention_kernels() { return nullptr; }
} // namespace frugal::ops::detail

#endif
