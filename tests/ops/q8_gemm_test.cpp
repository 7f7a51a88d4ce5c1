// q8_gemm_test.cpp - the q8 prefill path (lib/ops/q8_gemm.hpp): llama.cpp's block arithmetic
// with integer block sums on AVX-512 VNNI. Its kernel (q8_gemm_avx512.hpp) is compiled here
// against SIMD Everywhere's portable AVX-512, so it runs on any x86-64 CPU with AVX2, and held to
// a plain double-precision reference built from the library's dequantizers (not from the packing
// under test); then put in place of the library's kernel to drive matmul_context and the quantized
// parity models end to end. On CPUs with AVX-512 VNNI the library's own build is held to the same
// reference.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "ops/simde_avx512.hpp"

#include "common/test_support.hpp"
#include "models/model.hpp"
#include "ops/matmul.hpp"
#include "ops/quant.hpp"
#include "runtime/session.hpp"

#define FRUGAL_AVX512
#define FRUGAL_AVX512_NS frugal_test_simde
#include "ops/q8_gemm_avx512.hpp"

using namespace frugal;
namespace q8 = frugal::ops::q8;

namespace {

// K-quant rows of random bytes (every quant, fifth bit and 6-bit scale pattern) with ordinary
// positive fp16 super-block scales (the library has no K-quant weight quantizer).
template <class Block>
std::vector<std::byte> random_k_quant_weights(int64_t rows, int64_t k, std::mt19937 & rng) {
    std::uniform_int_distribution<int> byte(0, 255);
    std::uniform_real_distribution<float> scale(1e-3f, 1e-2f);
    std::vector<Block> blocks(static_cast<size_t>(rows * (k / k_qk_k)));
    for (auto & b : blocks) {
        auto * bytes = reinterpret_cast<uint8_t *>(&b);
        for (size_t i = 0; i < sizeof b; ++i) bytes[i] = uint8_t(byte(rng));
        b.d = fp32_to_fp16(scale(rng));
        b.dmin = fp32_to_fp16(scale(rng));
    }
    std::vector<std::byte> out(blocks.size() * sizeof(Block));
    std::memcpy(out.data(), blocks.data(), out.size());
    return out;
}

// rows x k weights of type t from seeded normal floats through the library's quantizers (random
// bytes for K-quants); for Q8_0 every third row holds extreme quants (-128, 127, 0, -1) to reach
// the ends of the ranges.
std::vector<std::byte> make_weights(dtype t, int64_t rows, int64_t k, uint32_t seed) {
    std::mt19937 rng(seed);
    if (t == dtype::q4_k) return random_k_quant_weights<block_q4_k>(rows, k, rng);
    if (t == dtype::q5_k) return random_k_quant_weights<block_q5_k>(rows, k, rng);
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

// The activation row x[k] as weight type t's kernels multiply it: its Q8_0 (Q8_K) blocks dequantized.
void activation_values(dtype t, const float * x, int64_t k, float * out) {
    std::vector<std::byte> buf(ops::activation_bytes(t, k));
    ops::quantize_activation(t, x, buf.data(), k);
    if (!q8::has_offsets(t)) return ops::dequantize_row(dtype::q8_0, buf.data(), out, k);
    const auto * blocks = reinterpret_cast<const ops::block_q8_k *>(buf.data());
    for (int64_t i = 0; i < k; ++i) out[i] = blocks[i / k_qk_k].d * float(blocks[i / k_qk_k].qs[i % k_qk_k]);
}

// The reference: each weight row and each activation row as the values the arithmetic multiplies
// (dequantize_row of the weight; the activation's blocks dequantized), their products summed in
// double. bound[i, c] = the f32 rounding allowance: (blocks + 4) · 2^-23 · Σ |w · x| (2 · blocks
// with offsets, which add a second product per block).
struct reference {
    std::vector<double> y, bound;
};

// wf: [cols, k] weights (w rows, stride bytes apart, dequantized); xf: [m, k] activation values.
std::vector<float> weight_values(dtype t, const std::byte * w, size_t stride, int64_t cols, int64_t k) {
    std::vector<float> wf(static_cast<size_t>(cols * k));
    for (int64_t c = 0; c < cols; ++c) ops::dequantize_row(t, w + c * stride, wf.data() + c * k, k);
    return wf;
}

reference reference_of_values(dtype t, const std::vector<float> & wf, const std::vector<float> & xf, int64_t cols,
                              int64_t m, int64_t k) {
    const int64_t terms = q8::has_offsets(t) ? 2 * (k / k_qk) : k / k_qk;
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
            ref.bound[size_t(i * cols + c)] = double(terms + 4) * std::ldexp(magnitude, -23) + 1e-30;
        }
    return ref;
}

reference reference_product(dtype t, const std::byte * w, int64_t cols, const float * x, int64_t m, int64_t k) {
    std::vector<float> xf(static_cast<size_t>(m * k));
    for (int64_t i = 0; i < m; ++i) activation_values(t, x + i * k, k, xf.data() + i * k);
    return reference_of_values(t, weight_values(t, w, size_t(row_bytes(t, k)), cols, k), xf, cols, m, k);
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
    std::vector<float> xd(static_cast<size_t>(m * nb)), xs(static_cast<size_t>(m * nb));
    q8::quantize_activations(t, x.data(), m, k, xq.data(), xd.data(), xs.data());
    std::vector<std::byte> scratch(q8::chunk_scratch_bytes(k));
    constexpr float sentinel = -12345.f;
    std::vector<float> y(static_cast<size_t>(m * ldy), sentinel);
    const q8::activations act{xq.data(), xd.data(), q8::has_offsets(t) ? xs.data() : nullptr, k};
    chunk(t, w.data(), size_t(row_bytes(t, k)), cols, act, m, y.data(), ldy, scratch.data());
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

constexpr dtype k_types[] = {dtype::q8_0, dtype::q4_0, dtype::q4_0_repacked, dtype::q4_k, dtype::q5_k};

void check_chunks(q8::chunk_fn chunk) {
    uint32_t seed = 1;
    for (dtype t : k_types) {
        const int64_t k = q8::has_offsets(t) ? 2 * k_qk_k : 3 * k_qk;
        for (int64_t m : {1, 2, 3, 4, 5, 7, 9})
            for (int64_t cols : {1, 5, 16, 17, 31, 32}) check_chunk(chunk, t, m, cols, k, seed++);
        check_chunk(chunk, t, 13, 32, 1536, seed++); // a model's row length
    }
}

// The emulated kernel as the library calls it (from its OpenMP threads), each call counted and
// held to the reference on the very operands it was given: inside a model, the f32 path and q8
// see different inputs after the first layer, so only a per-call check is exact.
std::atomic<int> g_simde_calls{0}, g_simde_wrong{0};
void checked_simde_chunk(dtype t, const std::byte * w, size_t w_stride, int64_t cols, const q8::activations & a,
                         int64_t m, float * y, int64_t ldy, std::byte * scratch) {
    ++g_simde_calls;
    frugal_test_simde::q8_chunk(t, w, w_stride, cols, a, m, y, ldy, scratch);
    std::vector<float> xf(static_cast<size_t>(m * a.k)); // (q − 128) · d, as the kernel reads them
    for (int64_t j = 0; j < m * a.k; ++j) xf[size_t(j)] = float(int(a.q[j]) - q8::k_act_offset) * a.d[j / k_qk];
    const reference ref = reference_of_values(t, weight_values(t, w, w_stride, cols, a.k), xf, cols, m, a.k);
    for (int64_t i = 0; i < m; ++i)
        for (int64_t c = 0; c < cols; ++c) {
            const size_t at = size_t(i * cols + c);
            g_simde_wrong += !(std::fabs(y[i * ldy + c] - ref.y[at]) <= ref.bound[at]);
        }
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
    CHECK(native == ops::detail::avx512_vnni_supported()); // CPUID decides, and bench reports it:
    CHECK(ops::prefill_gemm_native(ops::prefill_gemm::q8) == native);
    CHECK(ops::prefill_gemm_native(ops::prefill_gemm::f32));
    const int64_t k = 256, m = 30;
    for (dtype t : k_types) {
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
                    const kernel_override emulated(checked_simde_chunk);
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

TEST_CASE("prefill_gemm::q8 on the quantized parity models: every product exact, the f32 path's predictions" *
          doctest::timeout(300)) {
    if (!ops::detail::avx2_active()) FRUGAL_SKIP("no AVX2 on this CPU: SIMDe's emulation here is built for AVX2");
    FRUGAL_REQUIRE_PARITY_FIXTURES();
    // Every q8-capable weight type of the fixtures: Q8_0 (dense, and MoE + MLA), Q4_0 (repacked),
    // and the Q4_K / Q5_K matrices of the K-quant mixes (whose Q6_K ones take another path).
    // Each kernel call is checked exactly (checked_simde_chunk). The logits then follow the f32
    // path's (which parity_test holds to llama.cpp) up to float summation order, which can flip a
    // later activation's rounding (and, with MoE, a token's experts): as parity_test does for
    // these files, argmax must agree wherever the f32 path's margin exceeds 0.04.
    const kernel_override emulated(checked_simde_chunk);
    for (const char * name : {"tiny-qwen2-q8_0", "tiny-llama-q4_0", "tiny-deepseek2-q8_0", "tiny256-qwen2-q4_k_m",
                              "tiny256-llama-q5_k_m", "tiny256-deepseek3-q4_k_m"}) {
        CAPTURE(name);
        const auto model = frugal::load_model(frugal::test::parity_fixture(std::string(name) + ".gguf").string(), {});
        const int64_t V = model->config().n_vocab;
        const auto tokens = frugal::test::random_tokens(40, V, 9); // > small_batch rows: the GEMM paths
        std::vector<float> f32, q8;                                // [40, V]
        for (const auto & [g, out] : {std::pair{ops::prefill_gemm::f32, &f32}, std::pair{ops::prefill_gemm::q8, &q8}}) {
            frugal::session s(model, 64);
            s.set_prefill_gemm(g);
            g_simde_calls = 0;
            g_simde_wrong = 0;
            *out = s.evaluate_all(tokens);
            CHECK((g_simde_calls > 0) == (g == ops::prefill_gemm::q8));
            CHECK(g_simde_wrong == 0);
        }
        double diff = 0;
        int64_t decisive_disagree = 0;
        for (size_t row = 0; row < tokens.size(); ++row) {
            const float * a = f32.data() + row * size_t(V);
            const float * b = q8.data() + row * size_t(V);
            for (int64_t v = 0; v < V; ++v) diff = std::max(diff, double(std::fabs(a[v] - b[v])));
            const int64_t top = std::max_element(a, a + V) - a;
            float runner_up = -INFINITY;
            for (int64_t v = 0; v < V; ++v)
                if (v != top) runner_up = std::max(runner_up, a[v]);
            decisive_disagree += a[top] - runner_up > 0.04f && std::max_element(b, b + V) - b != top;
        }
        MESSAGE(std::string(name), ": q8 vs f32 over ", tokens.size(), " positions, max |logit diff| ", diff);
        CHECK(decisive_disagree == 0);
    }
}
