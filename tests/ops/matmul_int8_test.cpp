// matmul_int8_test.cpp - the opt-in int8 prefill GEMM (ops/matmul.hpp, prefill_gemm::int8) against
// (1) a plain simulation of its integer arithmetic, which catches a saturating or skipped path,
// and (2) the exact product x · dequant(w)ᵀ within the quantization error bound.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "common/test_support.hpp"
#include "frugal/dtype.hpp"
#include "ops/dnnl_compat.hpp"
#include "ops/matmul.hpp"
#include "ops/quant.hpp"

using namespace frugal;

namespace {

struct weight {
    dtype type;
    int64_t n, k;
    std::vector<std::byte> bytes;
    std::vector<float> values; // dequantized [n, k]
    raw_view view() const {
        return raw_view{type, bytes.data(), shape{n, k}};
    }
};

// Q4_0 (and repacked) from ggml's reference quantizer; Q4_K from random bits with sane fp16 scales.
weight make_weight(dtype t, int64_t n, int64_t k, uint32_t seed) {
    const int64_t rb = row_bytes(t, k);
    weight w{t, n, k, std::vector<std::byte>(size_t(n * rb)), std::vector<float>(size_t(n * k))};
    const auto src = test::random_floats(size_t(n * k), seed);
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> scale(0.001f, 0.02f);
    for (int64_t r = 0; r < n; ++r) {
        std::byte * row = w.bytes.data() + r * rb;
        if (t == dtype::q4_0) {
            ops::quantize_row_weights(t, src.data() + r * k, row, k);
        } else if (t == dtype::q4_0_repacked) { // values from Q4_0's own dequantizer
            std::vector<std::byte> q4(static_cast<size_t>(rb));
            ops::quantize_row_weights(dtype::q4_0, src.data() + r * k, q4.data(), k);
            ops::dequantize_row(dtype::q4_0, q4.data(), w.values.data() + r * k, k);
            ops::repack_rows(dtype::q4_0, q4.data(), row, 1, k);
            continue;
        } else {
            for (int64_t i = 0; i < rb; ++i) row[i] = std::byte(rng() & 0xFF);
            for (int64_t b = 0; b < k / k_qk_k; ++b) {
                auto & blk = reinterpret_cast<block_q4_k *>(row)[b];
                blk.d = fp32_to_fp16(scale(rng));
                blk.dmin = fp32_to_fp16(scale(rng));
            }
        }
        ops::dequantize_row(t, row, w.values.data() + r * k, k);
    }
    return w;
}

// q = round-half-even(v · level / amax) per row; returns amax / level.
double quantize(const float * v, int64_t n, int level, std::vector<int> & q) {
    float amax = 0;
    for (int64_t i = 0; i < n; ++i) amax = std::max(amax, std::fabs(v[i]));
    const float inv = amax > 0 ? float(level) / amax : 0.f;
    q.resize(size_t(n));
    for (int64_t i = 0; i < n; ++i) q[size_t(i)] = int(std::nearbyint(v[i] * inv));
    return double(amax) / level;
}

void check_int8_linear(const weight & w, int64_t m, int threads) {
    INFO("weight ", std::string(dtype_name(w.type)), " [", w.n, ", ", w.k, "], m ", m, ", threads ", threads);
    const int64_t n = w.n, k = w.k, ldy = n + 3;
    const auto x = test::random_floats(size_t(m * k), uint32_t(m + n));
    std::vector<float> y(size_t(m * ldy), -777.f);
    ops::matmul_context ctx(threads);
    ctx.small_batch = 8;
    ctx.prefill = ops::prefill_gemm::int8;
    ctx.linear(w.view(), x.data(), m, y.data(), ldy);

    const int level = ops::dnnl_compat::int8_pairs_saturate() ? 64 : 127;
    std::vector<std::vector<int>> qw(static_cast<size_t>(n));
    std::vector<double> sw(static_cast<size_t>(n));
    for (int64_t r = 0; r < n; ++r) sw[size_t(r)] = quantize(w.values.data() + r * k, k, level, qw[size_t(r)]);
    double worst_sim = 0, worst_exact = 0;
    int64_t untouched = 0;
    std::vector<int> qx;
    for (int64_t i = 0; i < m; ++i) {
        const float * xi = x.data() + i * k;
        const double sx = quantize(xi, k, 127, qx);
        for (int64_t r = 0; r < n; ++r) {
            const float * wr = w.values.data() + r * k;
            int64_t acc = 0;
            double exact = 0, magnitude = 0, quant_bound = 0;
            for (int64_t j = 0; j < k; ++j) {
                acc += int64_t(qx[size_t(j)]) * qw[size_t(r)][size_t(j)];
                exact += double(xi[j]) * wr[j];
                magnitude += std::fabs(double(xi[j]) * wr[j]);
                // |x − sx·qx| <= sx/2 and |w − sw·qw| <= sw/2 (plus float rounding of the scales)
                quant_bound += std::fabs(wr[j]) * sx / 2 + std::fabs(xi[j]) * sw[size_t(r)] / 2 + sx * sw[size_t(r)] / 4;
            }
            const double got = y[size_t(i * ldy + r)];
            const double sim = sx * sw[size_t(r)] * double(acc);
            // The library's float scale products and conversions: a few ulps of the sum's magnitude.
            worst_sim = std::max(worst_sim, std::fabs(got - sim) / (1e-5 * (magnitude + std::fabs(sim)) + 1e-12));
            worst_exact = std::max(worst_exact, std::fabs(got - exact) / (1.01 * quant_bound + 1e-5 * magnitude));
        }
        for (int64_t r = n; r < ldy; ++r) untouched += y[size_t(i * ldy + r)] != -777.f;
    }
    CHECK(untouched == 0);
    CHECK(worst_sim <= 1.0);   // the integer products are the simulated ones: nothing saturated
    CHECK(worst_exact <= 1.0); // and within the quantization error of the exact product
}

} // namespace

TEST_CASE("int8 prefill GEMM equals its integer simulation and bounds the exact product" * doctest::timeout(120)) {
    CHECK(ops::int8_prefill_type(dtype::q4_0));
    CHECK(ops::int8_prefill_type(dtype::q4_0_repacked));
    CHECK(ops::int8_prefill_type(dtype::q4_k));
    CHECK_FALSE(ops::int8_prefill_type(dtype::q8_0)); // would lose precision: stays on the F32 path
    CHECK_FALSE(ops::int8_prefill_type(dtype::q6_k));
    for (bool scalar : {false, true}) { // the AVX2 build of the conversions, then the baseline one
        const ops::detail::force_scalar_scope scope(scalar);
        CAPTURE(scalar);
        for (dtype t : {dtype::q4_0, dtype::q4_0_repacked, dtype::q4_k})
            for (int threads : {1, 2}) {
                const auto w = make_weight(t, 37, 512, 11);
                for (int64_t m : {8, 45}) check_int8_linear(w, m, threads);
            }
    }
}

TEST_CASE("int8 prefill GEMM over several weight slabs" * doctest::timeout(120)) {
    // K = 8192: 512-row slabs of s8, so N = 600 takes two, the last partial.
    const auto w = make_weight(dtype::q4_0, 600, 8192, 5);
    check_int8_linear(w, 9, 2);
}

TEST_CASE("int8 prefill stays off unless asked for" * doctest::timeout(60)) {
    // The default (F32 or BF16) multiplies dequantized weights with Q8_0- or BF16-rounded
    // activations; on these inputs its result differs from the int8 one.
    const auto w = make_weight(dtype::q4_0, 16, 256, 3);
    const int64_t m = 8;
    const auto x = test::random_floats(size_t(m * w.k), 9);
    std::vector<float> exact(size_t(m * w.n)), int8(size_t(m * w.n));
    ops::matmul_context ctx(1);
    ctx.small_batch = 8;
    CHECK(ctx.prefill == ops::default_prefill_gemm());
    if (std::getenv("FRUGAL_PREFILL_GEMM")) FRUGAL_SKIP("FRUGAL_PREFILL_GEMM sets the default");
    CHECK(ctx.prefill != ops::prefill_gemm::int8);
    ctx.linear(w.view(), x.data(), m, exact.data());
    ctx.prefill = ops::prefill_gemm::int8;
    ctx.linear(w.view(), x.data(), m, int8.data());
    CHECK(exact != int8);
}
