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

void quantize_activations(dtype t, const float * x, int64_t m, int64_t k, uint8_t * q, float * d, float * s) {
    const int64_t nb = k / k_qk;
    std::vector<std::byte> buf(activation_bytes(t, k)); // one row's blocks, a few KiB
    for (int64_t i = 0; i < m; ++i) {
        quantize_activation(t, x + i * k, buf.data(), k);
        const int8_t * qs = nullptr;
        for (int64_t b = 0; b < nb; ++b) {
            if (has_offsets(t)) { // Q8_K: 256 quants, one d, sums per 16
                const auto & blk = reinterpret_cast<const block_q8_k *>(buf.data())[b / 8];
                const int64_t j = b % 8;
                qs = blk.qs + j * k_qk;
                d[i * nb + b] = blk.d;
                s[i * nb + b] = blk.d * float(blk.bsums[2 * j] + blk.bsums[2 * j + 1]);
            } else {
                const auto & blk = reinterpret_cast<const block_q8_0 *>(buf.data())[b];
                qs = blk.qs;
                d[i * nb + b] = fp16_to_fp32(blk.d);
            }
            for (int64_t e = 0; e < k_qk; ++e) q[i * k + b * k_qk + e] = uint8_t(qs[e] + k_act_offset);
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
