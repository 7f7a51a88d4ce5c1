// simde_kernels.hpp - the library's AVX-512 kernel headers compiled against SIMD Everywhere's
// portable AVX-512 (tests/ops/simde_avx512.hpp), for tests that run them on any x86-64 CPU.
#pragma once

#include "ops/attention_kernels.hpp"

namespace frugal::test {

// The AVX-512 attention kernels (lib/ops/attention_avx512_kernels.hpp) on SIMDe; nullptr when the
// tests were built without libsimde-dev.
const ops::detail::attention_kernels * simde_avx512_attention_kernels();

} // namespace frugal::test
