// q8_gemm.cpp - the q8 prefill path's activation format and kernel choice (q8_gemm.hpp).
#include "ops/q8_gemm.hpp"

#include <atomic>
#include <vector>

#include "ops/quant.hpp"

namespace frugal::ops::q8 {
namespace detail {
const kernel * avx512_chunk();    // q8_gemm_avx512.cpp
const kernel * avx2_chunk();      // q8_gemm_avx2.cpp
const kernel * avx2_vnni_chunk(); // q8_gemm_avx2.cpp
} // namespace detail

namespace {
std::atomic<const kernel *> g_test_kernel{nullptr};
}

void quantize_activations(dtype t, const float * x, int64_t m, int64_t k, uint8_t * q, float * d, int16_t * sums) {
    const int64_t nb = k / k_qk;
    // Q8_K, or Q8_0 blocks (Q4_1's and Q5_1's Q8_1 has the same quants and d)
    const dtype format = super_blocks(t) ? t : dtype::q8_0;
    std::vector<std::byte> buf(activation_bytes(format, k)); // one row's blocks, a few KiB
    for (int64_t i = 0; i < m; ++i) {
        quantize_activation(format, x + i * k, buf.data(), k);
        const int8_t * qs = nullptr;
        for (int64_t b = 0; b < nb; ++b) {
            if (super_blocks(t)) { // Q8_K: 256 quants, one d, sums per 16
                const auto & blk = reinterpret_cast<const block_q8_k *>(buf.data())[b / 8];
                const int64_t j = b % 8;
                qs = blk.qs + j * k_qk;
                d[i * nb + b] = blk.d;
                if (sums_per_block(t) == 1) sums[i * nb + b] = int16_t(blk.bsums[2 * j] + blk.bsums[2 * j + 1]);
                if (sums_per_block(t) == 2)
                    for (int64_t h = 0; h < 2; ++h) sums[(i * nb + b) * 2 + h] = blk.bsums[2 * j + h];
            } else {
                const auto & blk = reinterpret_cast<const block_q8_0 *>(buf.data())[b];
                qs = blk.qs;
                d[i * nb + b] = fp16_to_fp32(blk.d);
                if (has_offsets(t)) {
                    int sum = 0;
                    for (int8_t v : blk.qs) sum += v;
                    sums[i * nb + b] = int16_t(sum);
                }
            }
            for (int64_t e = 0; e < k_qk; ++e) q[i * k + b * k_qk + e] = uint8_t(qs[e] + k_act_offset);
        }
    }
}

const kernel * avx512_kernel() { return ops::detail::avx512_vnni_supported() ? detail::avx512_chunk() : nullptr; }
const kernel * avx2_kernel() { return ops::detail::avx2_active() ? detail::avx2_chunk() : nullptr; }
const kernel * avx2_vnni_kernel() {
    return ops::detail::avx2_active() && ops::detail::avx_vnni_supported() ? detail::avx2_vnni_chunk() : nullptr;
}

const kernel * chunk_kernel() {
    if (const kernel * k = g_test_kernel.load(std::memory_order_relaxed)) return k;
    if (const kernel * k = avx512_kernel()) return k;
    if (const kernel * k = avx2_vnni_kernel()) return k;
    return avx2_kernel();
}

const kernel * kernel_for(dtype t) {
    const kernel * k = chunk_kernel();
    return k && k->takes(t) ? k : nullptr;
}

void set_chunk_kernel_for_tests(const kernel * k) { g_test_kernel.store(k, std::memory_order_relaxed); }

} // namespace frugal::ops::q8
