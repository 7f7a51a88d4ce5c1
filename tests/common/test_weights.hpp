// test_weights.hpp - weights of every dtype for tests: an [n, k] matrix made from seeded random
// floats (or, for types with no quantizer here, random quants), with the values it holds once
// converted, which is what a reference multiplies.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "common/test_support.hpp"
#include "frugal/dtype.hpp"
#include "frugal/tensor_view.hpp"
#include "ops/quant.hpp"

namespace frugal::test {

// An [n, k] weight stored as `type`, made from random floats, with the values it holds once
// converted (what the reference multiplies).
struct test_weight {
    dtype type;
    int64_t n, k;
    std::vector<std::byte> bytes;
    std::vector<float> values;
    raw_view view() const { return {type, bytes.data(), shape{n, k}}; }
};

// Types without a quantizer here (K-quants, Q4_1, Q5_0, Q5_1, IQ4_NL): random bytes (every quant
// and sub-scale pattern) with the fp16 block scales, and Q4_1's and Q5_1's offset m, set to finite
// positive values. With d, m > 0 such a weight d·q + m has |w| = |d·q| + |m|, which product_bound
// needs: m meets its own activation error (through Q8_1's s) apart from d·q.
inline void random_quant_row(dtype t, std::byte * row, int64_t k, std::mt19937 & rng) {
    std::uniform_int_distribution<int> byte(0, 255);
    std::uniform_real_distribution<float> scale(1e-4f, 1e-3f);
    for (int64_t i = 0; i < row_bytes(t, k); ++i) row[i] = std::byte(byte(rng));
    std::vector<size_t> offsets{0}; // Q5_0, IQ4_NL: d first
    switch (t) {
    case dtype::q6_k: offsets = {offsetof(block_q6_k, d)}; break;
    case dtype::q3_k: offsets = {offsetof(block_q3_k, d)}; break;
    case dtype::q2_k: offsets = {offsetof(block_q2_k, d), offsetof(block_q2_k, dmin)}; break;
    case dtype::q4_1: offsets = {offsetof(block_q4_1, d), offsetof(block_q4_1, m)}; break;
    case dtype::q5_1: offsets = {offsetof(block_q5_1, d), offsetof(block_q5_1, m)}; break;
    case dtype::q4_k:
    case dtype::q5_k: offsets = {offsetof(block_q4_k, d), offsetof(block_q4_k, dmin)}; break;
    default: break;
    }
    static_assert(offsetof(block_q5_k, d) == offsetof(block_q4_k, d));
    static_assert(offsetof(block_q5_k, dmin) == offsetof(block_q4_k, dmin));
    for (int64_t b = 0; b < k / traits(t).block_size; ++b)
        for (size_t off : offsets) {
            const uint16_t h = fp32_to_fp16(scale(rng));
            std::memcpy(row + b * traits(t).block_bytes + int64_t(off), &h, sizeof h);
        }
}

inline test_weight make_weight(dtype t, int64_t n, int64_t k, uint32_t seed) {
    const int64_t rb = row_bytes(t, k);
    test_weight w{t, n, k, std::vector<std::byte>(size_t(n * rb)), std::vector<float>(size_t(n * k))};
    const auto src = random_floats(size_t(n * k), seed);
    std::mt19937 rng(seed);
    for (int64_t r = 0; r < n; ++r) {
        const float * s = src.data() + r * k;
        std::byte * row = w.bytes.data() + r * rb;
        float * val = w.values.data() + r * k;
        const auto store_half = [&](auto to_half, auto to_float) {
            for (int64_t i = 0; i < k; ++i) {
                const uint16_t h = to_half(s[i]);
                std::memcpy(row + 2 * i, &h, sizeof h);
                val[i] = to_float(h);
            }
        };
        switch (t) {
        case dtype::f32:
            std::memcpy(row, s, size_t(rb));
            std::copy(s, s + k, val);
            break;
        case dtype::f16: store_half(fp32_to_fp16, fp16_to_fp32); break;
        case dtype::bf16: store_half(fp32_to_bf16, bf16_to_fp32); break;
        case dtype::q8_0:
        case dtype::q4_0:
            ops::quantize_row_weights(t, s, row, k);
            ops::dequantize_row(t, row, val, k);
            break;
        case dtype::q4_0_repacked: { // values from Q4_0's own dequantizer, not the repacked one
            std::vector<std::byte> q4(static_cast<size_t>(rb));
            ops::quantize_row_weights(dtype::q4_0, s, q4.data(), k);
            ops::dequantize_row(dtype::q4_0, q4.data(), val, k);
            ops::repack_rows(dtype::q4_0, q4.data(), row, 1, k);
            break;
        }
        case dtype::q5_0_repacked:
        case dtype::iq4_nl_repacked:
        case dtype::q4_1_repacked:
        case dtype::q5_1_repacked: { // values from the stored type's own dequantizer, not the repacked one
            const dtype stored = ops::stored_type(t);
            std::vector<std::byte> q(static_cast<size_t>(rb));
            random_quant_row(stored, q.data(), k, rng);
            ops::dequantize_row(stored, q.data(), val, k);
            ops::repack_rows(stored, q.data(), row, 1, k);
            break;
        }
        default:
            random_quant_row(t, row, k, rng);
            ops::dequantize_row(t, row, val, k);
        }
    }
    return w;
}

} // namespace frugal::test
