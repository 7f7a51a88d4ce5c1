// q8_gemm.cpp - the q8 prefill path's activation format and kernel choice (q8_gemm.hpp).
#include "ops/q8_gemm.hpp"

#include <atomic>
#include <vector>

#include "ops/quant.hpp"

namespace frugal::ops::q8 {
namespace detail {
chunk_fn avx512_chunk(); // q8_gemm_avx512.cpp
}

namespace {
std::atomic<chunk_fn> g_test_kernel{nullptr};
}

void quantize_activations(const float * x, int64_t m, int64_t k, uint8_t * q, float * d) {
    const int64_t nb = k / k_qk;
    std::vector<block_q8_0> blocks(static_cast<size_t>(nb)); // a few KiB per call of a thread
    for (int64_t i = 0; i < m; ++i) {
        quantize_activation(dtype::q8_0, x + i * k, blocks.data(), k);
        for (int64_t b = 0; b < nb; ++b) {
            d[i * nb + b] = fp16_to_fp32(blocks[size_t(b)].d);
            for (int64_t j = 0; j < k_qk; ++j) q[i * k + b * k_qk + j] = uint8_t(blocks[size_t(b)].qs[j] + k_act_offset);
        }
    }
}

chunk_fn chunk_kernel() {
    if (const chunk_fn f = g_test_kernel.load(std::memory_order_relaxed)) return f;
    static const chunk_fn native = ops::detail::avx512_vnni_supported() ? detail::avx512_chunk() : nullptr;
    return native;
}

void set_chunk_kernel_for_tests(chunk_fn f) { g_test_kernel.store(f, std::memory_order_relaxed); }

} // namespace frugal::ops::q8
