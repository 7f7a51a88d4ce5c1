// simde_kernels.cpp - see simde_kernels.hpp.
#include "common/simde_kernels.hpp"

#if defined(FRUGAL_TEST_HAVE_SIMDE)

#include "ops/simde_avx512.hpp"

#define FRUGAL_AVX512
#define FRUGAL_AVX512_BF16
#define FRUGAL_AVX512_NS frugal_test_simde_attention
#include "ops/attention_avx512_kernels.hpp"

const frugal::ops::detail::attention_kernels * frugal::test::simde_avx512_attention_kernels() {
    return &frugal_test_simde_attention::kernels_bf16;
}

#else

const frugal::ops::detail::attention_kernels * frugal::test::simde_avx512_attention_kernels() { return nullptr; }

#endif
