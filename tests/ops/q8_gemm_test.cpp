// q8_gemm_test.cpp - the q8 prefill path (lib/ops/q8_gemm.hpp): llama.cpp's block arithmetic
// with integer block sums on AVX-512 VNNI. Its kernel (q8_gemm_avx512.hpp) is compiled here
// against SIMD Everywhere's portable AVX-512, so it runs on any x86-64 CPU with AVX2, and held to
// a plain double-precision reference built from the library's dequantizers (not from the packing
// under test); then put in place of the library's kernel to drive matmul_context end to end. On
// CPUs with AVX-512 VNNI the library's own build is held to the same reference.
#include <doctest/doctest.h>

#include <atomic>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "ops/simde_avx512.hpp"

#include "common/test_support.hpp"
#include "ops/matmul.hpp"
#include "ops/quant.hpp"

#define FRUGAL_AVX512
#define FRUGAL_AVX512_NS frugal_test_simde
#include "ops/q8_gemm_avx512.hpp"

using namespace frugal;
namespace q8 = frugal::ops::q8;

namespace {

// rows x k weights of type t from seeded normal floats through the library's quantizers; for
// Q8_0 every third row holds extreme quants (-128, 127, 0, -1) to reach the ends of the ranges.
std::vector<std::byte> make_weights(dtype t, int64_t rows, int64_t k, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal(0.f, 1.f);
    const dtype stored = t == dtype::q4_0_repacked ? dtype::q4_0 : t;
    const int64_t stride = row_bytes(t, k);
    std::vector<std::byte> plain(static_cast<size_t>(rows * stride));
    std::vector<float> x(static_cast<size_t>(k));
    for (int64_t r = 0; r < rows; ++r) {
        for (auto & v : x) v = normal(rng);
        ops::quantize_row_weights(stored, x.data(), plain.data() + r * stride, k);
        if (stored != dtype::q8_0 || r % 3 != 1) continue;
        auto * blocks = reinterpret_cast<block_q8_0 *>(plain.data() + r * stride);
        const int8_t extremes[] = {-128, 127, 0, -1};
        for (int64_t b = 0; b < k / k_qk; ++b)
            for (int i = 0; i < k_qk; ++i) blocks[b].qs[i] = extremes[(i + b + r) % 4];
    }
    if (t != dtype::q4_0_repacked) return plain;
    std::vector<std::byte> repacked(plain.size());
    ops::repack_rows(dtype::q4_0, plain.data(), repacked.data(), rows, k);
    return repacked;
}

std::vector<float> random_activations(int64_t m, int64_t k, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal(0.f, 1.f);
    std::vector<float> x(static_cast<size_t>(m * k));
    for (auto & v : x) v = normal(rng);
    if (m * k > 40) x[7] = 0.f, x[33] = 25.f; // a zero and an outlier in the first row's blocks
    return x;
}

// The reference: each weight row and each activation row as the values the arithmetic multiplies
// (dequantize_row of the weight; the activation's Q8_0 blocks dequantized), their products summed
// in double. bound[i, c] = the f32 rounding allowance: (blocks + 4) · 2^-23 · Σ |w · x|.
struct reference {
    std::vector<double> y, bound;
};

reference reference_product(dtype t, const std::byte * w, int64_t cols, const float * x, int64_t m, int64_t k) {
    const int64_t stride = row_bytes(t, k), nb = k / k_qk;
    std::vector<float> wf(static_cast<size_t>(cols * k)), xf(static_cast<size_t>(m * k));
    for (int64_t c = 0; c < cols; ++c) ops::dequantize_row(t, w + c * stride, wf.data() + c * k, k);
    std::vector<block_q8_0> blocks(static_cast<size_t>(nb));
    for (int64_t i = 0; i < m; ++i) {
        ops::quantize_activation(dtype::q8_0, x + i * k, blocks.data(), k);
        ops::dequantize_row(dtype::q8_0, blocks.data(), xf.data() + i * k, k);
    }
    reference ref{std::vector<double>(size_t(m * cols)), std::vector<double>(size_t(m * cols))};
    for (int64_t i = 0; i < m; ++i)
        for (int64_t c = 0; c < cols; ++c) {
            double sum = 0, magnitude = 0;
            for (int64_t j = 0; j < k; ++j) {
                const double p = double(wf[size_t(c * k + j)]) * double(xf[size_t(i * k + j)]);
                sum += p;
                magnitude += std::fabs(p);
            }
            ref.y[size_t(i * cols + c)] = sum;
            ref.bound[size_t(i * cols + c)] = double(nb + 4) * std::ldexp(magnitude, -23) + 1e-30;
        }
    return ref;
}

// One chunk call of `chunk` against the reference: every written value within its bound, and
// nothing written outside [0, cols) of each row (ldy leaves a gap that must keep its sentinel).
void check_chunk(q8::chunk_fn chunk, dtype t, int64_t m, int64_t cols, int64_t k, uint32_t seed) {
    CAPTURE(std::string(dtype_name(t)));
    CAPTURE(m);
    CAPTURE(cols);
    CAPTURE(k);
    const auto w = make_weights(t, cols, k, seed);
    const auto x = random_activations(m, k, seed + 1);
    const int64_t nb = k / k_qk, ldy = q8::k_chunk_cols + 3;
    std::vector<uint8_t> xq(static_cast<size_t>(m * k));
    std::vector<float> xd(static_cast<size_t>(m * nb));
    q8::quantize_activations(x.data(), m, k, xq.data(), xd.data());
    std::vector<std::byte> scratch(q8::chunk_scratch_bytes(k));
    constexpr float sentinel = -12345.f;
    std::vector<float> y(static_cast<size_t>(m * ldy), sentinel);
    chunk(t, w.data(), size_t(row_bytes(t, k)), cols, q8::activations{xq.data(), xd.data(), k}, m, y.data(), ldy,
          scratch.data());
    const reference ref = reference_product(t, w.data(), cols, x.data(), m, k);
    int64_t bad = 0, untouched_wrong = 0;
    double worst = 0;
    for (int64_t i = 0; i < m; ++i)
        for (int64_t c = 0; c < ldy; ++c) {
            const float got = y[size_t(i * ldy + c)];
            if (c >= cols) {
                untouched_wrong += got != sentinel;
                continue;
            }
            const double err = std::fabs(double(got) - ref.y[size_t(i * cols + c)]);
            const double bound = ref.bound[size_t(i * cols + c)];
            worst = std::max(worst, err / bound);
            bad += !(err <= bound);
        }
    CHECK(bad == 0);
    CHECK(untouched_wrong == 0);
    CHECK(worst <= 1.0);
}

void check_chunks(q8::chunk_fn chunk) {
    uint32_t seed = 1;
    for (dtype t : {dtype::q8_0, dtype::q4_0, dtype::q4_0_repacked}) {
        for (int64_t m : {1, 2, 3, 4, 5, 7, 9})
            for (int64_t cols : {1, 5, 16, 17, 31, 32}) check_chunk(chunk, t, m, cols, 96, seed++);
        check_chunk(chunk, t, 13, 32, 1536, seed++); // a model's row length
    }
}

std::atomic<int> g_simde_calls{0}; // the library calls the kernel from its OpenMP threads
void counted_simde_chunk(dtype t, const std::byte * w, size_t w_stride, int64_t cols, const q8::activations & a,
                         int64_t m, float * y, int64_t ldy, std::byte * scratch) {
    ++g_simde_calls;
    frugal_test_simde::q8_chunk(t, w, w_stride, cols, a, m, y, ldy, scratch);
}

// Restores the library's own kernel choice when a test case ends, however it ends.
struct kernel_override {
    explicit kernel_override(q8::chunk_fn f) { q8::set_chunk_kernel_for_tests(f); }
    ~kernel_override() { q8::set_chunk_kernel_for_tests(nullptr); }
    kernel_override(const kernel_override &) = delete;
    kernel_override & operator=(const kernel_override &) = delete;
};

} // namespace

TEST_CASE("q8 kernel, emulated by SIMDe, equals llama.cpp's block arithmetic" * doctest::timeout(120)) {
    if (!ops::detail::avx2_active()) FRUGAL_SKIP("no AVX2 on this CPU: SIMDe's emulation here is built for AVX2");
    check_chunks(frugal_test_simde::q8_chunk);
}

TEST_CASE("q8 kernel of the library equals llama.cpp's block arithmetic" * doctest::timeout(60)) {
    const q8::chunk_fn native = q8::chunk_kernel();
    if (!native) FRUGAL_SKIP("this CPU has no AVX-512 VNNI: the library has no q8 kernel here");
    check_chunks(native);
    CHECK(ops::default_prefill_gemm() == ops::prefill_gemm::q8);
}

TEST_CASE("prefill_gemm::q8 runs the q8 kernel through matmul_context, with f32's results" * doctest::timeout(120)) {
    if (!ops::detail::avx2_active()) FRUGAL_SKIP("no AVX2 on this CPU: SIMDe's emulation here is built for AVX2");
    const bool native = q8::chunk_kernel() != nullptr;
    const int64_t k = 256, m = 30;
    for (dtype t : {dtype::q8_0, dtype::q4_0, dtype::q4_0_repacked}) {
        for (int64_t n : {50, 96}) { // a partial last chunk, and whole ones
            CAPTURE(std::string(dtype_name(t)));
            CAPTURE(n);
            const auto wbytes = make_weights(t, n, k, uint32_t(n));
            const raw_view w{t, wbytes.data(), frugal::shape{n, k}};
            const auto x = random_activations(m, k, 5);
            const int64_t ldy = n + 4;
            for (int threads : {1, 2}) {
                CAPTURE(threads);
                ops::matmul_context ctx(threads);
                std::vector<float> y_f32(static_cast<size_t>(m * ldy), 0.f), y_q8(static_cast<size_t>(m * ldy), 0.f);
                ctx.prefill = ops::prefill_gemm::f32;
                ctx.linear(w, x.data(), m, y_f32.data(), ldy);
                ctx.prefill = ops::prefill_gemm::q8;
                if (!native) { // the same arithmetic without VNNI: the f32 path itself
                    ctx.linear(w, x.data(), m, y_q8.data(), ldy);
                    CHECK(y_q8 == y_f32);
                }
                {
                    const kernel_override emulated(counted_simde_chunk);
                    g_simde_calls = 0;
                    ctx.linear(w, x.data(), m, y_q8.data(), ldy);
                    CHECK(g_simde_calls == (n + q8::k_chunk_cols - 1) / q8::k_chunk_cols);
                }
                const reference ref = reference_product(t, wbytes.data(), n, x.data(), m, k);
                int64_t bad = 0;
                for (int64_t i = 0; i < m; ++i)
                    for (int64_t c = 0; c < n; ++c) {
                        const double want = ref.y[size_t(i * n + c)], bound = ref.bound[size_t(i * n + c)];
                        bad += !(std::fabs(y_q8[size_t(i * ldy + c)] - want) <= bound);
                    }
                CHECK(bad == 0);
            }
        }
    }
}
