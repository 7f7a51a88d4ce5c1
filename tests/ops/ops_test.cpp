// ops_test.cpp - lib/ops kernels (rmsnorm, rope, softmax, swiglu, attention, matmul) against the
// double-precision references of tests/reference/ops_ref on random shapes, seeds and 1 or 2 threads.
#include <doctest/doctest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <random>
#include <span>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <oneapi/dnnl/dnnl.hpp>

#include "common/test_support.hpp"
#include "common/simde_kernels.hpp"
#include "common/test_weights.hpp"
#include "frugal/dtype.hpp"
#include "frugal/tensor_view.hpp"
#include "ops/amx_gemm.hpp"
#include "ops/attention.hpp"
#include "ops/attention_kernels.hpp"
#include "ops/gemm_pack.hpp"
#include "ops/matmul.hpp"
#include "ops/quant.hpp"
#include "ops/rmsnorm.hpp"
#include "ops/rope.hpp"
#include "ops/softmax.hpp"
#include "ops/swiglu.hpp"
#include "reference/ops_ref.hpp"
#include "reference/quant_ref.hpp"
#include "util/error.hpp"

using namespace frugal;
using frugal::test::make_weight;
using frugal::test::test_weight;

namespace {

constexpr uint32_t k_seeds[] = {1, 42, 2024};
constexpr int k_thread_counts[] = {1, 2};
// Float kernels against double references: a handful of float roundings per output.
constexpr double k_rtol = 1e-5;

// Passes when |got[i] - want[i]| <= bound[i] for every i (NaN fails); otherwise reports the first
// offender and how many there are.
void check_within(const float * got, const std::vector<double> & want, const std::vector<double> & bound) {
    size_t n_bad = 0, first = 0;
    for (size_t i = 0; i < want.size(); ++i) {
        if (std::abs(double(got[i]) - want[i]) <= bound[i]) continue;
        if (n_bad++ == 0) first = i;
    }
    std::string report;
    if (n_bad)
        report = fmt::format("{} of {} outside tolerance; first at [{}]: got {} want {} (bound {})", n_bad, want.size(),
                             first, got[first], want[first], bound[first]);
    CHECK_MESSAGE(n_bad == 0, report);
}

// Elementwise |got - want| <= rtol * |want| + atol.
void check_close(const float * got, const std::vector<double> & want, double rtol, double atol) {
    std::vector<double> bound(want.size());
    for (size_t i = 0; i < want.size(); ++i) bound[i] = rtol * std::abs(want[i]) + atol;
    check_within(got, want, bound);
}

} // namespace

TEST_CASE("rmsnorm matches the reference, with and without weight, in place" * doctest::timeout(60)) {
    struct shape_case {
        int64_t rows, n;
    };
    const shape_case shapes[] = {{1, 1}, {1, 7}, {3, 17}, {7, 33}, {2, 100}, {5, 4096}};
    // At 1e-3 mean(x²) is comparable to eps, so a misplaced eps shows.
    const float amplitudes[] = {1e-3f, 1.f, 1e3f};
    const float eps = 1e-6f;
    for (const auto & s : shapes)
        for (uint32_t seed : k_seeds)
            for (float amp : amplitudes)
                for (int threads : k_thread_counts)
                    for (bool weighted : {false, true})
                        for (bool in_place : {false, true}) {
                            CAPTURE(s.rows);
                            CAPTURE(s.n);
                            CAPTURE(seed);
                            CAPTURE(amp);
                            CAPTURE(threads);
                            CAPTURE(weighted);
                            CAPTURE(in_place);
                            auto x = test::random_floats(size_t(s.rows * s.n), seed, -amp, amp);
                            const auto w = test::random_floats(size_t(s.n), seed + 1, 0.5f, 1.5f);
                            const float * wp = weighted ? w.data() : nullptr;
                            const auto want = ref::rmsnorm(x.data(), wp, s.rows, s.n, eps);
                            std::vector<float> y(x.size());
                            float * out = in_place ? x.data() : y.data();
                            ops::rmsnorm(x.data(), wp, out, s.rows, s.n, eps, threads);
                            // Each output is x_i * scale * w_i: a relative error of a few roundings.
                            check_close(out, want, k_rtol, 0);
                        }
}

namespace {

struct rope_case {
    int64_t n_pos, n_heads, head_dim, n_rot;
    float freq_base, freq_scale;
    bool factors; // llama3-style rope_freqs divisors
    int32_t pos0, pos_step;
    // YaRN (off by default)
    float ext_factor = 0.f, attn_factor = 1.f, beta_fast = 32.f, beta_slow = 1.f;
    int64_t n_ctx_orig = 0;
};

// rope_apply against ref::rope for both pairings, every seed and thread count; the outputs are
// a·cos - b·sin with |a|, |b| <= 1, so the error scales with the pair (absolute term `atol`).
// check_tail: dims past n_rot must pass through bit for bit.
void check_rope_cases(std::span<const rope_case> cases, double atol, bool check_tail) {
    for (const auto & c : cases)
        for (auto mode : {ops::rope_mode::normal, ops::rope_mode::neox})
            for (uint32_t seed : k_seeds)
                for (int threads : k_thread_counts) {
                    INFO("n_pos ", c.n_pos, " n_heads ", c.n_heads, " head_dim ", c.head_dim, " n_rot ", c.n_rot,
                         " base ", c.freq_base, " scale ", c.freq_scale, " ext ", c.ext_factor, " attn ",
                         c.attn_factor, " beta ", c.beta_fast, "/", c.beta_slow, " orig ", c.n_ctx_orig, " factors ",
                         c.factors, " pos0 ", c.pos0, " step ", c.pos_step, " neox ", mode == ops::rope_mode::neox);
                    CAPTURE(seed);
                    CAPTURE(threads);
                    std::vector<int32_t> positions(size_t(c.n_pos));
                    for (int64_t t = 0; t < c.n_pos; ++t) positions[size_t(t)] = c.pos0 + int32_t(t) * c.pos_step;
                    const auto factors = test::random_floats(size_t(c.n_rot / 2), seed + 1, 1.f, 8.f);
                    const float * fp = c.factors ? factors.data() : nullptr;
                    const auto x = test::random_floats(size_t(c.n_pos * c.n_heads * c.head_dim), seed);

                    const ops::rope_params p{.n_rot = c.n_rot, .freq_base = c.freq_base, .freq_scale = c.freq_scale,
                                             .mode = mode, .freq_factors = fp, .ext_factor = c.ext_factor,
                                             .attn_factor = c.attn_factor, .beta_fast = c.beta_fast,
                                             .beta_slow = c.beta_slow, .n_ctx_orig = c.n_ctx_orig};
                    ops::rope_table table;
                    table.build(p, positions.data(), c.n_pos);
                    auto got = x;
                    ops::rope_apply(p, table, got.data(), c.n_pos, c.n_heads, c.head_dim, threads);

                    const ref::rope_config rc{.n_rot = c.n_rot, .freq_base = c.freq_base, .freq_scale = c.freq_scale,
                                              .neox = mode == ops::rope_mode::neox, .freq_factors = fp,
                                              .ext_factor = c.ext_factor, .attn_factor = c.attn_factor,
                                              .beta_fast = c.beta_fast, .beta_slow = c.beta_slow,
                                              .n_ctx_orig = double(c.n_ctx_orig)};
                    const auto want = ref::rope(rc, x.data(), positions.data(), c.n_pos, c.n_heads, c.head_dim);
                    check_close(got.data(), want, k_rtol, atol);
                    if (!check_tail) continue;
                    int64_t tail_changed = 0;
                    for (int64_t r = 0; r < c.n_pos * c.n_heads; ++r)
                        for (int64_t d = c.n_rot; d < c.head_dim; ++d)
                            tail_changed += got[size_t(r * c.head_dim + d)] != x[size_t(r * c.head_dim + d)];
                    CHECK(tail_changed == 0);
                }
}

} // namespace

TEST_CASE("rope normal and neox match the reference" * doctest::timeout(60)) {
    const rope_case cases[] = {
        {1, 1, 2, 2, 10000.f, 1.f, false, 0, 1},
        {3, 4, 64, 64, 10000.f, 1.f, false, 0, 1},
        {7, 3, 64, 32, 10000.f, 1.f, false, 5, 1},     // n_rot < head_dim, positions from 5
        {5, 2, 128, 128, 500000.f, 1.f, true, 17, 3},  // freq factors, positions with gaps
        {17, 5, 96, 64, 1e6f, 0.25f, true, 1000, 1},   // freq_scale != 1 with factors and a tail
        {33, 2, 128, 128, 10000.f, 1.f, false, 100000, 1}, // a float angle would be ~1e-2 rad off here
        {4, 3, 80, 48, 10000.f, 0.125f, true, 99990, 7777},
    };
    check_rope_cases(cases, k_rtol, true);
}

TEST_CASE("rope with YaRN matches the reference" * doctest::timeout(60)) {
    const float ds_attn = float(1 / (1 + 0.1 * std::log(40.0))); // llama.cpp's deepseek2 cancellation
    // n_pos, n_heads, head_dim, n_rot, base, scale, factors, pos0, step, ext, attn, beta fast/slow, orig
    const rope_case cases[] = {
        {5, 3, 64, 64, 1e4f, 1 / 40.f, false, 0, 1, 1.f, ds_attn, 32.f, 1.f, 4096},       // DeepSeek-V3 rope
        {9, 2, 192, 64, 1e4f, 1 / 40.f, false, 99000, 123, 1.f, 1.f, 32.f, 1.f, 4096},    // near 100k, a tail
        {7, 5, 80, 48, 5e5f, 0.25f, true, 17, 777, 0.5f, 1.3f, 24.f, 2.f, 8192},         // half ramp, factors
        {1, 1, 2, 2, 1e4f, 0.5f, false, 100000, 1, 1.f, 1.f, 32.f, 1.f, 2048},            // one pair
        {3, 2, 16, 16, 1e4f, 0.125f, false, 50, 1000, 1.f, 1.f, 32.f, 1.f, 4},            // low == high
        {6, 4, 64, 32, 1e4f, 1.f, false, 0, 3, 0.f, 0.8f, 32.f, 1.f, 0},                  // attn_factor alone
    };
    // cos/sin are scaled by up to ~1.4 here, so the absolute term grows with them.
    check_rope_cases(cases, 2 * k_rtol, false);
}

TEST_CASE("rope YaRN ramp for DeepSeek (base 1e4, 64 dims, 4096 context, beta 32/1) spans pairs 10 to 23" *
          doctest::timeout(60)) {
    const double factor = 40;
    ops::rope_params p{.n_rot = 64, .freq_base = 1e4f, .freq_scale = float(1 / factor)};
    p.ext_factor = 1;
    p.n_ctx_orig = 4096;
    for (bool cancelled : {true, false}) {
        CAPTURE(cancelled);
        // llama.cpp's deepseek2 attn_factor undoes YaRN's cos/sin growth; ggml's default keeps it.
        p.attn_factor = cancelled ? float(1 / (1 + 0.1 * std::log(factor))) : 1.f;
        const double magnitude = cancelled ? 1 : 1 + 0.1 * std::log(factor);
        // At position 1 every angle is below 1 rad, so atan2 gives it back unwrapped.
        const int32_t pos = 1;
        ops::rope_table table;
        table.build(p, &pos, 1);
        for (int64_t i = 0; i < 32; ++i) {
            CAPTURE(i);
            const double c = table.cos[size_t(i)], s = table.sin[size_t(i)];
            CHECK(std::hypot(c, s) == doctest::Approx(magnitude).epsilon(1e-6));
            const double angle = std::atan2(s, c);
            const double unscaled = std::pow(1e4, -2.0 * double(i) / 64);
            if (i <= 10)
                CHECK(angle == doctest::Approx(unscaled).epsilon(1e-5)); // at and below low: trained frequency
            else if (i >= 23)
                CHECK(angle == doctest::Approx(unscaled / factor).epsilon(1e-5)); // at and above high: interpolated
            else {
                CHECK(angle < unscaled * (1 - 1e-3)); // strictly inside the ramp
                CHECK(angle > unscaled / factor * (1 + 1e-3));
            }
        }
    }
    p.n_ctx_orig = 0;
    ops::rope_table table;
    const int32_t pos = 0;
    CHECK_THROWS_WITH_AS(table.build(p, &pos, 1), doctest::Contains("n_ctx_orig = 0"), frugal::error);
}

TEST_CASE("softmax matches the reference, including large magnitudes and masked entries" * doctest::timeout(60)) {
    const int64_t sizes[] = {1, 2, 3, 7, 17, 33, 100, 1000};
    const float amplitudes[] = {1.f, 30.f, 1000.f};
    for (int64_t n : sizes)
        for (uint32_t seed : k_seeds)
            for (float amp : amplitudes)
                for (bool masked : {false, true}) {
                    if (masked && n == 1) continue; // a row of only -inf has no softmax
                    CAPTURE(n);
                    CAPTURE(seed);
                    CAPTURE(amp);
                    CAPTURE(masked);
                    auto x = test::random_floats(size_t(n), seed, -amp, amp);
                    if (masked) x[size_t(n / 2)] = -std::numeric_limits<float>::infinity();
                    const float x_max = *std::max_element(x.begin(), x.end());
                    const auto want = ref::softmax(x.data(), n);
                    CHECK(ops::softmax(x.data(), n) == x_max);
                    // x - max is exact or off by <= 4e-6 while |x - max| < 87 (beyond, e^(x - max)
                    // underflows float): a relative error of a few ulps. The atol only admits
                    // results below float's normal range, where the op returns subnormals or 0.
                    check_close(x.data(), want, k_rtol, 1e-37);
                    if (n == 1) CHECK(x[0] == 1.f);
                }
}

TEST_CASE("swiglu matches the reference, including large |x|" * doctest::timeout(60)) {
    // 20000 > the op's parallel threshold (16384), so the 2-thread run really splits.
    const int64_t sizes[] = {1, 3, 7, 17, 33, 100, 20000};
    const float amplitudes[] = {1.f, 100.f, 1000.f};
    for (bool portable : {false, true}) // the AVX2 kernel where the CPU has it, then libm's expf
    for (int64_t n : sizes)
        for (uint32_t seed : k_seeds)
            for (float amp : amplitudes)
                for (int threads : k_thread_counts)
                    for (bool in_place : {false, true}) {
                        CAPTURE(n);
                        CAPTURE(seed);
                        CAPTURE(amp);
                        CAPTURE(threads);
                        CAPTURE(in_place);
                        CAPTURE(portable);
                        const ops::detail::force_scalar_scope scope(portable);
                        auto gate = test::random_floats(size_t(n), seed, -amp, amp);
                        const auto up = test::random_floats(size_t(n), seed + 1, -2.f, 2.f);
                        const auto want = ref::swiglu(gate.data(), up.data(), n);
                        std::vector<float> y(size_t(n), 0.f);
                        float * out = in_place ? gate.data() : y.data();
                        ops::swiglu(gate.data(), up.data(), out, n, threads);
                        // Relative a few ulps; below about g = -87 e^-g overflows float and the op
                        // returns 0 for a true value under 1e-36, which the atol admits.
                        check_close(out, want, k_rtol, 1e-30);
                    }
}

TEST_CASE("swiglu's vector kernels (AVX2, AVX-512) agree to the bit" * doctest::timeout(60)) {
    const auto kernels = ops::detail::swiglu_kernels_for_tests();
    if (kernels.size() < 2) FRUGAL_SKIP("this CPU runs one SwiGLU kernel at most: nothing to compare");
    // Every length up to two 16-lane steps and a tail (the wide kernel hands its rest to the
    // narrow one), then a long row; gates from −1000 to 1000 reach the exponential's flush to 0.
    for (int64_t n : {1, 7, 8, 15, 16, 17, 24, 31, 33, 1000})
        for (float amp : {1.f, 30.f, 1000.f}) {
            CAPTURE(n);
            CAPTURE(amp);
            const auto gate = test::random_floats(size_t(n), uint32_t(n), -amp, amp);
            const auto up = test::random_floats(size_t(n), uint32_t(n) + 1, -2.f, 2.f);
            std::vector<float> want(static_cast<size_t>(n)), got(static_cast<size_t>(n));
            kernels[0](gate.data(), up.data(), want.data(), n);
            for (size_t k = 1; k < kernels.size(); ++k) {
                kernels[k](gate.data(), up.data(), got.data(), n);
                CHECK(std::memcmp(got.data(), want.data(), size_t(n) * sizeof(float)) == 0);
            }
        }
}

TEST_CASE("swiglu_rows matches the reference row by row, with strides and in place" * doctest::timeout(60)) {
    // m · n = 20400 > the op's parallel threshold, so the 2-thread run really splits.
    const int64_t m = 120, n = 170, ld_gate = 181, ld_up = 173;
    for (bool portable : {false, true})
        for (int threads : k_thread_counts)
            for (bool in_place : {false, true}) {
                CAPTURE(portable);
                CAPTURE(threads);
                CAPTURE(in_place);
                const ops::detail::force_scalar_scope scope(portable);
                auto gate = test::random_floats(size_t(m * ld_gate), 7, -20.f, 20.f);
                const auto up = test::random_floats(size_t(m * ld_up), 8, -2.f, 2.f);
                const int64_t ld_out = in_place ? ld_gate : n + 5;
                std::vector<float> y(size_t(m * ld_out), -7.f);
                const std::vector<float> gate_before = gate;
                float * out = in_place ? gate.data() : y.data();
                ops::swiglu_rows(gate.data(), ld_gate, up.data(), ld_up, out, ld_out, m, n, threads);
                for (int64_t i = 0; i < m; ++i) {
                    CAPTURE(i);
                    const auto want = ref::swiglu(gate_before.data() + i * ld_gate, up.data() + i * ld_up, n);
                    check_close(out + i * ld_out, want, k_rtol, 1e-30);
                    // the padding between rows is left alone
                    for (int64_t j = n; j < ld_out; ++j)
                        CHECK(out[i * ld_out + j] == (in_place ? gate_before[size_t(i * ld_gate + j)] : -7.f));
                }
            }
}

namespace {

struct attention_case {
    int64_t n_head, n_head_kv, head_dim, v_dim, n_tokens, pos0;
};

struct attention_inputs {
    std::vector<float> q, k, v;
};

// The cache holds a few positions past pos0 + n_tokens - 1, set to NaN: reading them would
// poison the outputs.
attention_inputs make_attention_inputs(const attention_case & c, uint32_t seed) {
    constexpr int64_t k_spare = 3;
    const int64_t n_kv = c.pos0 + c.n_tokens;
    // |q| up to 3 makes some score rows peaked, not just near uniform.
    attention_inputs in{test::random_floats(size_t(c.n_tokens * c.n_head * c.head_dim), seed, -3.f, 3.f),
                        test::random_floats(size_t((n_kv + k_spare) * c.n_head_kv * c.head_dim), seed + 1),
                        test::random_floats(size_t((n_kv + k_spare) * c.n_head_kv * c.v_dim), seed + 2)};
    const float nan = std::numeric_limits<float>::quiet_NaN();
    std::fill(in.k.begin() + n_kv * c.n_head_kv * c.head_dim, in.k.end(), nan);
    std::fill(in.v.begin() + n_kv * c.n_head_kv * c.v_dim, in.v.end(), nan);
    return in;
}

float attention_scale(const attention_case & c) { return 1.f / std::sqrt(float(c.head_dim)); }

std::vector<float> run_attention(const attention_case & c, const attention_inputs & in, int threads) {
    const ops::attention_params p{.n_head = c.n_head, .n_head_kv = c.n_head_kv, .head_dim = c.head_dim,
                                  .v_dim = c.v_dim, .scale = attention_scale(c)};
    std::vector<float> out(size_t(c.n_tokens * c.n_head * c.v_dim));
    std::vector<float> scratch;
    ops::attention(p, in.q.data(), c.n_tokens, c.pos0, in.k.data(), in.v.data(), out.data(), scratch, threads);
    return out;
}

std::string describe(const attention_case & c) {
    return fmt::format("n_head {} n_head_kv {} head_dim {} v_dim {} n_tokens {} pos0 {}", c.n_head, c.n_head_kv,
                       c.head_dim, c.v_dim, c.n_tokens, c.pos0);
}

} // namespace

TEST_CASE("attention matches the reference: decode, prefill, grouped heads" * doctest::timeout(60)) {
    const attention_case cases[] = {
        {1, 1, 1, 1, 1, 0},
        {4, 4, 64, 64, 1, 0},    // decode, first token
        {4, 4, 64, 64, 1, 37},   // decode
        {8, 2, 64, 64, 1, 100},  // grouped decode
        {8, 2, 32, 32, 7, 0},    // grouped prefill into an empty cache
        {6, 3, 17, 33, 5, 9},    // prefill after earlier tokens, odd dims, v_dim != head_dim
        {6, 3, 128, 96, 33, 3},
        {2, 1, 7, 3, 17, 16},
    };
    for (const auto & c : cases)
        for (uint32_t seed : k_seeds)
            for (int threads : k_thread_counts) {
                INFO(describe(c));
                CAPTURE(seed);
                CAPTURE(threads);
                const auto in = make_attention_inputs(c, seed);
                const auto got = run_attention(c, in, threads);
                const ref::attention_config rc{.n_head = c.n_head, .n_head_kv = c.n_head_kv, .head_dim = c.head_dim,
                                               .v_dim = c.v_dim, .scale = attention_scale(c)};
                const auto want = ref::attention(rc, in.q.data(), c.n_tokens, c.pos0, in.k.data(), in.v.data());
                // Outputs are convex combinations of v (|v| <= 1), so the error is absolute.
                check_close(got.data(), want, k_rtol, k_rtol);
            }
}

TEST_CASE("attention is causal: changing a later cache position leaves earlier tokens unchanged" *
          doctest::timeout(60)) {
    const attention_case c{8, 2, 32, 24, 6, 4};
    const int64_t token_floats = c.n_head * c.v_dim;
    for (uint32_t seed : k_seeds)
        for (int threads : k_thread_counts) {
            INFO(describe(c));
            CAPTURE(seed);
            CAPTURE(threads);
            const auto in = make_attention_inputs(c, seed);
            const auto before = run_attention(c, in, threads);
            for (int64_t t_changed = 0; t_changed < c.n_tokens; ++t_changed) {
                CAPTURE(t_changed);
                // Key and value of the position token t_changed sits at, for every kv head.
                auto changed = in;
                const int64_t pos = c.pos0 + t_changed;
                const int64_t k_row = c.n_head_kv * c.head_dim, v_row = c.n_head_kv * c.v_dim;
                for (int64_t i = 0; i < k_row; ++i) changed.k[size_t(pos * k_row + i)] += 1.f;
                for (int64_t i = 0; i < v_row; ++i) changed.v[size_t(pos * v_row + i)] += 1.f;
                const auto after = run_attention(c, changed, threads);
                for (int64_t t = 0; t < c.n_tokens; ++t) {
                    CAPTURE(t);
                    const auto first = t * token_floats;
                    const bool same = std::equal(before.begin() + first, before.begin() + first + token_floats,
                                                 after.begin() + first);
                    CHECK(same == (t < t_changed));
                }
            }
        }
}

TEST_CASE("attention reads strided rows: V as the head of each K row, as absorbed MLA does" * doctest::timeout(60)) {
    // One shared KV head whose rows are [latent (v_dim) | rope part], padded to a wider stride.
    const int64_t n_head = 5, head_dim = 23, v_dim = 16, stride = 29, n_tokens = 4, pos0 = 6;
    const int64_t n_kv = pos0 + n_tokens;
    for (uint32_t seed : k_seeds)
        for (int threads : k_thread_counts) {
            CAPTURE(seed);
            CAPTURE(threads);
            const auto q = test::random_floats(size_t(n_tokens * n_head * head_dim), seed, -3.f, 3.f);
            const auto cache = test::random_floats(size_t(n_kv * stride), seed + 1);
            std::vector<float> k(size_t(n_kv * head_dim)), v(size_t(n_kv * v_dim)); // packed copies
            for (int64_t j = 0; j < n_kv; ++j) {
                std::copy_n(cache.begin() + j * stride, head_dim, k.begin() + j * head_dim);
                std::copy_n(cache.begin() + j * stride, v_dim, v.begin() + j * v_dim);
            }
            const float scale = 0.3f;
            const ops::attention_params p{.n_head = n_head, .n_head_kv = 1, .head_dim = head_dim, .v_dim = v_dim,
                                          .scale = scale, .k_stride = stride, .v_stride = stride};
            std::vector<float> out(size_t(n_tokens * n_head * v_dim)), scratch;
            ops::attention(p, q.data(), n_tokens, pos0, cache.data(), cache.data(), out.data(), scratch, threads);
            const ref::attention_config rc{.n_head = n_head, .n_head_kv = 1, .head_dim = head_dim, .v_dim = v_dim,
                                           .scale = scale};
            check_close(out.data(), ref::attention(rc, q.data(), n_tokens, pos0, k.data(), v.data()), k_rtol, k_rtol);
        }
}

namespace {

// The attention kernels to exercise: the CPU's (AVX-512 or AVX2 where present), the forced
// portable ones, and the AVX-512 ones on SIMDe (any CPU; cases whose dims are not multiples of
// 16 fall back to the CPU's choice there).
struct attention_path {
    const char * name;
    bool portable;
    const ops::detail::attention_kernels * kernels; // installed for the run; nullptr: the CPU's choice
};
std::vector<attention_path> attention_paths() {
    ops::detail::force_scalar(false);
    std::vector<attention_path> paths;
    if (ops::detail::avx2_active()) paths.push_back({"cpu", false, nullptr});
    paths.push_back({"portable", true, nullptr});
    if (const auto * simde = test::simde_avx512_attention_kernels()) paths.push_back({"avx512 (SIMDe)", false, simde});
    return paths;
}

// Installs a path's kernels for a scope.
struct attention_path_scope {
    ops::detail::force_scalar_scope scalar;
    explicit attention_path_scope(const attention_path & p) : scalar(p.portable) {
        ops::detail::set_attention_kernels_for_tests(p.kernels);
    }
    ~attention_path_scope() { ops::detail::set_attention_kernels_for_tests(nullptr); }
    attention_path_scope(const attention_path_scope &) = delete;
    attention_path_scope & operator=(const attention_path_scope &) = delete;
};

// max |got − want| / max |want|; infinite when got holds a NaN.
double relative_error(const std::vector<float> & got, const std::vector<double> & want) {
    double err = 0, top = 0;
    for (size_t i = 0; i < want.size(); ++i) {
        const double e = std::abs(double(got[i]) - want[i]);
        err = std::isnan(e) ? std::numeric_limits<double>::infinity() : std::max(err, e);
        top = std::max(top, std::abs(want[i]));
    }
    return err / top;
}

// run(threads) on every kernel path (selected while it runs) with 1 and 2 threads.
template <class Run>
void on_every_attention_path(Run run) {
    for (const attention_path & path : attention_paths())
        for (int threads : k_thread_counts) {
            CAPTURE(std::string(path.name));
            CAPTURE(threads);
            const attention_path_scope scope(path);
            run(threads);
        }
}

// Runs ops::attention on every kernel path with 1 and 2 threads and checks each output against
// want to within tol relative to max |want|.
void check_attention_runs(const ops::attention_params & p, const float * q, int64_t n_tokens, int64_t pos0,
                          const void * k, const void * v, const std::vector<double> & want, double tol) {
    on_every_attention_path([&](int threads) {
        std::vector<float> out(want.size()), scratch;
        ops::attention(p, q, n_tokens, pos0, k, v, out.data(), scratch, threads);
        const double err = relative_error(out, want);
        CHECK_MESSAGE(err < tol, fmt::format("max error {:.3g} of max |ref|, tolerance {:.3g}", err, tol));
    });
}

ops::attention_params attention_params_of(const attention_case & c, float scale) {
    return {.n_head = c.n_head, .n_head_kv = c.n_head_kv, .head_dim = c.head_dim, .v_dim = c.v_dim, .scale = scale};
}

std::vector<double> attention_reference(const attention_case & c, float scale, const float * q, const float * k,
                                        const float * v) {
    const ref::attention_config rc{.n_head = c.n_head, .n_head_kv = c.n_head_kv, .head_dim = c.head_dim,
                                   .v_dim = c.v_dim, .scale = scale};
    return ref::attention(rc, q, c.n_tokens, c.pos0, k, v);
}

// Cache rows x as a cache of type t holds them, made independently of the library's conversions:
// F32 as is; F16 rounded by the compiler's _Float16 (to nearest even); Q8_0 in blocks of 32 by
// the plain reference quantizer (ggml's quantize_row_q8_0). The bytes, and their values as floats.
struct cache_rows {
    std::vector<std::byte> bytes;
    std::vector<float> values;
};

cache_rows to_cache(const std::vector<float> & x, dtype t) {
    cache_rows c;
    const auto append = [&](const auto & v) {
        const auto * b = reinterpret_cast<const std::byte *>(&v);
        c.bytes.insert(c.bytes.end(), b, b + sizeof v);
    };
    if (t == dtype::f32) {
        for (float f : x) append(f);
        c.values = x;
    } else if (t == dtype::f16) {
        for (float f : x) {
            const auto r = static_cast<_Float16>(f);
            append(std::bit_cast<uint16_t>(r));
            c.values.push_back(static_cast<float>(r));
        }
    } else {
        REQUIRE(t == dtype::q8_0);
        const auto q = ref::quantize_q8_0(x.data(), int64_t(x.size()));
        for (size_t b = 0; b < q.d.size(); ++b) {
            append(std::bit_cast<uint16_t>(static_cast<_Float16>(q.d[b]))); // d is already a binary16 value
            for (size_t e = 0; e < size_t(k_qk); ++e) {
                append(q.qs[b * k_qk + e]);
                c.values.push_back(q.d[b] * float(q.qs[b * k_qk + e]));
            }
        }
    }
    return c;
}

constexpr dtype k_kv_types[] = {dtype::f32, dtype::f16, dtype::q8_0};

// A Q8_0 cache takes dims in whole blocks only.
bool cache_holds(const attention_case & c, dtype t) {
    return t != dtype::q8_0 || (c.head_dim % k_qk == 0 && c.v_dim % k_qk == 0);
}

// run(c, kv_type, inputs) for each case and cache type whose blocks hold the case's dims.
template <class Run>
void for_each_cached_case(std::span<const attention_case> cases, uint32_t seed, Run run) {
    for (const auto & c : cases)
        for (const dtype kv_type : k_kv_types) {
            INFO(describe(c));
            CAPTURE(std::string(dtype_name(kv_type)));
            if (!cache_holds(c, kv_type)) continue;
            run(c, kv_type, make_attention_inputs(c, seed));
        }
}

// Case c over a cache of kv_type on every path, against the reference on the values the cache
// holds (to_cache). v_in_k: the cache is K alone and V the first v_dim elements of each K row, as
// absorbed MLA reads it.
void check_attention_case(const attention_case & c, uint32_t seed, dtype kv_type, bool v_in_k = false) {
    INFO(describe(c));
    CAPTURE(seed);
    CAPTURE(std::string(dtype_name(kv_type)));
    if (!cache_holds(c, kv_type)) return;
    const auto in = make_attention_inputs(c, seed);
    const auto k = to_cache(in.k, kv_type), v = to_cache(in.v, kv_type);
    const std::vector<float> & k_values = k.values;
    std::vector<float> v_values = v.values;
    if (v_in_k) { // the reference reads a packed copy of V
        const int64_t n_kv = c.pos0 + c.n_tokens;
        v_values.resize(size_t(n_kv * c.v_dim));
        for (int64_t j = 0; j < n_kv; ++j)
            std::copy_n(k_values.begin() + j * c.head_dim, c.v_dim, v_values.begin() + j * c.v_dim);
    }
    const float scale = attention_scale(c);
    const auto want = attention_reference(c, scale, in.q.data(), k_values.data(), v_values.data());
    auto p = attention_params_of(c, scale);
    p.kv_type = kv_type;
    if (v_in_k) p.k_stride = p.v_stride = c.head_dim;
    const void * k_cache = k.bytes.data();
    const void * v_cache = v_in_k ? k_cache : v.bytes.data();
    check_attention_runs(p, in.q.data(), c.n_tokens, c.pos0, k_cache, v_cache, want, k_rtol);
}

} // namespace

TEST_CASE("blocked attention matches the reference across key blocks, GQA groups and depths, on every path, "
          "over F32, F16 and Q8_0 caches" *
          doctest::timeout(120)) {
    // The kernels take keys in blocks of 64 (a decode step reading an F16 cache directly: 16):
    // depths 513 and 1000 and prefills of 7, 64 and 300 tokens put block edges and ragged last
    // blocks inside query blocks (and, split across threads, inside key ranges). Dims are multiples of 8,
    // so the AVX2 path serves them where present, except the last case's (portable kernels).
    // F16 and Q8_0 caches are widened a block at a time (or read directly): the same cases hold
    // them to the reference on the values they hold (the odd dims: F32 and F16 only).
    const attention_case cases[] = {
        // group 1
        {2, 2, 64, 64, 1, 0},
        {2, 2, 64, 64, 1, 1},
        {2, 2, 64, 64, 1, 1000},
        {2, 2, 64, 64, 64, 0},
        {3, 3, 128, 128, 7, 513},
        // group 2
        {4, 2, 64, 64, 1, 1000},
        {4, 2, 64, 64, 7, 513},
        {4, 2, 128, 128, 300, 0},
        // group 6 (Qwen2-1.5B: 12 heads on 2 kv heads of 128)
        {12, 2, 128, 128, 1, 0},
        {12, 2, 128, 128, 1, 1},
        {12, 2, 128, 128, 1, 1000},
        {12, 2, 128, 128, 7, 0},
        {12, 2, 128, 128, 64, 513},
        {12, 2, 128, 128, 300, 513},
        // one kv head: with 2 threads the keys are split into ranges and merged
        {6, 1, 128, 128, 1, 1000},
        {1, 1, 64, 64, 48, 40}, // the second range lies past the causal limit of the first 24 tokens
        // DeepSeek-V2 without absorption: head_dim 192, v_dim 128
        {4, 4, 192, 128, 1, 1000},
        {4, 4, 192, 128, 7, 0},
        {4, 4, 192, 128, 64, 513},
        // odd dims
        {6, 3, 17, 33, 5, 9},
    };
    for (size_t i = 0; i < std::size(cases); ++i)
        for (dtype kv_type : k_kv_types) check_attention_case(cases[i], k_seeds[i % std::size(k_seeds)], kv_type);
}

TEST_CASE("scores_kt: scores against keys transposed into lanes equal the plain sums, for every set that has it" *
          doctest::timeout(60)) {
    // The AVX-512 kernels (the library's where the CPU has them, and the SIMDe build anywhere)
    // multiply prefill queries against a [head_dim][64] tile of keys in lanes; 1 to 13 rows (tails
    // of the 4-row tiles), ragged key counts, and head dims of Qwen2 (128) and MLA (576).
    std::vector<std::pair<const char *, const ops::detail::attention_kernels *>> sets;
    if (const auto * native = ops::detail::avx512_attention_kernels()) sets.emplace_back("avx512", native);
    if (const auto * simde = test::simde_avx512_attention_kernels()) sets.emplace_back("avx512 (SIMDe)", simde);
    if (sets.empty()) FRUGAL_SKIP("no AVX-512 attention kernels here (neither the CPU's nor SIMDe's)");
    constexpr int64_t kt_keys = ops::detail::k_kt_keys, ld_s = 64;
    for (const auto & [name, kern] : sets) {
        CAPTURE(std::string(name));
        REQUIRE(bool(kern->scores_kt));
        for (int64_t hd : {int64_t(128), int64_t(576)})
            for (int64_t rows : {int64_t(1), int64_t(4), int64_t(13)})
                for (int64_t n : {int64_t(1), int64_t(45), kt_keys}) {
                    CAPTURE(hd);
                    CAPTURE(rows);
                    CAPTURE(n);
                    const auto q = test::random_floats(size_t(rows * hd), uint32_t(hd + rows));
                    const auto kt = test::random_floats(size_t(hd * kt_keys), uint32_t(n));
                    std::vector<float> s(size_t(rows * ld_s), -1.f);
                    kern->scores_kt(q.data(), rows, hd, kt.data(), n, s.data(), ld_s);
                    double worst = 0, scale = 0;
                    for (int64_t r = 0; r < rows; ++r)
                        for (int64_t j = 0; j < n; ++j) {
                            double want = 0, mag = 0;
                            for (int64_t d = 0; d < hd; ++d) {
                                want += double(q[size_t(r * hd + d)]) * kt[size_t(d * kt_keys + j)];
                                mag += std::fabs(double(q[size_t(r * hd + d)]) * kt[size_t(d * kt_keys + j)]);
                            }
                            worst = std::max(worst, std::fabs(s[size_t(r * ld_s + j)] - want));
                            scale = std::max(scale, mag);
                        }
                    CHECK(worst <= 1e-6 * scale);
                }
    }
}

namespace {

// x rounded to BF16's 8 significant bits, to nearest with ties to even (nearbyint in the default
// rounding mode), by arithmetic rather than the kernels' bit steps. Normal finite x only.
float bf16_nearest(float x) {
    if (x == 0.f) return x;
    int e = 0;
    std::frexp(x, &e); // x = m · 2^e, 0.5 <= |m| < 1: the 8th significant bit is worth 2^(e − 8)
    const double ulp = std::ldexp(1.0, e - 8);
    return float(std::nearbyint(double(x) / ulp) * ulp);
}
uint32_t bf16_word(float x) { return std::bit_cast<uint32_t>(bf16_nearest(x)) >> 16; }
float bf16_value(uint32_t pair, int half) { return std::bit_cast<float>((pair >> (16 * half)) << 16); }

// The AVX-512 sets with BF16 products: the CPU's where it has AVX-512 BF16, SIMDe's anywhere.
std::vector<std::pair<const char *, const ops::detail::attention_kernels *>> bf16_kernel_sets() {
    std::vector<std::pair<const char *, const ops::detail::attention_kernels *>> sets;
    if (const auto * native = ops::detail::avx512_attention_kernels(); native && native->scores_kt_bf16)
        sets.emplace_back("avx512", native);
    if (const auto * simde = test::simde_avx512_attention_kernels()) sets.emplace_back("avx512 (SIMDe)", simde);
    return sets;
}

// Attention on BF16-rounded operands as attention_params::bf16_products describes it, in double:
// the query times scale · log2 e (in float), K and V rounded to BF16; P exact (the kernels round
// it too, a relative 2^-9 per weight).
std::vector<double> bf16_attention_reference(const attention_case & c, float scale, const std::vector<float> & q,
                                             const std::vector<float> & k, const std::vector<float> & v) {
    const float q_scale = float(double(scale) * 1.4426950408889634);
    const int64_t group = c.n_head / c.n_head_kv;
    std::vector<double> out(size_t(c.n_tokens * c.n_head * c.v_dim));
    for (int64_t t = 0; t < c.n_tokens; ++t)
        for (int64_t h = 0; h < c.n_head; ++h) {
            const int64_t hk = h / group, n = c.pos0 + t + 1;
            std::vector<double> s(static_cast<size_t>(n));
            double top = -std::numeric_limits<double>::infinity();
            for (int64_t j = 0; j < n; ++j) {
                for (int64_t d = 0; d < c.head_dim; ++d) {
                    const float qs = q[size_t((t * c.n_head + h) * c.head_dim + d)] * q_scale;
                    s[size_t(j)] +=
                        double(bf16_nearest(qs)) * bf16_nearest(k[size_t((j * c.n_head_kv + hk) * c.head_dim + d)]);
                }
                top = std::max(top, s[size_t(j)]);
            }
            double total = 0;
            double * o = out.data() + (t * c.n_head + h) * c.v_dim;
            for (int64_t j = 0; j < n; ++j) {
                const double w = std::exp2(s[size_t(j)] - top);
                total += w;
                for (int64_t e = 0; e < c.v_dim; ++e)
                    o[e] += w * bf16_nearest(v[size_t((j * c.n_head_kv + hk) * c.v_dim + e)]);
            }
            for (int64_t e = 0; e < c.v_dim; ++e) o[e] /= total;
        }
    return out;
}

} // namespace

TEST_CASE("BF16 kernels: pairs rounded to nearest even, and products equal to the plain sums of the BF16 values" *
          doctest::timeout(60)) {
    const auto sets = bf16_kernel_sets();
    if (sets.empty()) FRUGAL_SKIP("no AVX-512 BF16 attention kernels here (neither the CPU's nor SIMDe's)");
    constexpr int64_t kt_keys = ops::detail::k_kt_keys, ld_s = 64;
    for (const auto & [name, kern] : sets) {
        CAPTURE(std::string(name));
        // Rounding: random values, exact ties (a half-ulp tail on an even and on an odd last bit)
        // and carries into the exponent; 70 values cover the 16-wide loop and a scalar tail.
        std::vector<float> x = test::random_floats(70, 7, -50.f, 50.f);
        x[0] = std::bit_cast<float>(0x3F808000u); // tie, even last bit: stays 0x3F80
        x[1] = std::bit_cast<float>(0x3F818000u); // tie, odd last bit: up to 0x3F82
        x[2] = std::bit_cast<float>(0x3FFFFFFFu); // carries into the exponent: 0x4000
        x[67] = std::bit_cast<float>(0xBF818000u); // a tie in the tail, negative
        for (int64_t n : {int64_t(2), int64_t(16), int64_t(70)}) {
            CAPTURE(n);
            std::vector<uint32_t> pairs(size_t(n / 2), 0xDEADBEEFu);
            kern->to_bf16_pairs(x.data(), n, pairs.data());
            for (int64_t i = 0; i < n / 2; ++i)
                CHECK(pairs[size_t(i)] == (bf16_word(x[size_t(2 * i)]) | bf16_word(x[size_t(2 * i + 1)]) << 16));
        }
        const auto a = test::random_floats(32, 8), b = test::random_floats(32, 9);
        std::vector<uint32_t> both(32);
        kern->interleave_bf16(a.data(), b.data(), 32, both.data());
        for (size_t e = 0; e < 32; ++e) CHECK(both[e] == (bf16_word(a[e]) | bf16_word(b[e]) << 16));

        // Products: 1 to 13 rows (tails of the 4-row tiles), odd and even key counts, the MLA
        // head's 192/128 dims and a v_dim whose last 16 lanes take the one-vector tile.
        const auto words = [](size_t n, uint32_t seed) {
            const auto f = test::random_floats(2 * n, seed);
            std::vector<uint32_t> w(n);
            for (size_t i = 0; i < n; ++i) w[i] = bf16_word(f[2 * i]) | bf16_word(f[2 * i + 1]) << 16;
            return w;
        };
        for (int64_t rows : {int64_t(1), int64_t(4), int64_t(13)})
            for (int64_t n : {int64_t(1), int64_t(45), kt_keys}) {
                CAPTURE(rows);
                CAPTURE(n);
                const int64_t hd = 192, vd = 80, steps = (n + 1) / 2;
                const auto q = words(size_t(rows * hd / 2), uint32_t(rows));
                const auto kt = words(size_t(hd / 2 * kt_keys), uint32_t(n));
                std::vector<float> s(size_t(rows * ld_s), -1.f);
                kern->scores_kt_bf16(q.data(), rows, hd, kt.data(), n, s.data(), ld_s);
                auto p = words(size_t(rows * kt_keys / 2), uint32_t(n + 100)); // rows kt_keys / 2 words apart
                if (n % 2)
                    for (int64_t r = 0; r < rows; ++r) p[size_t(r * kt_keys / 2 + n / 2)] &= 0xFFFFu; // key n: 0
                const auto vp = words(size_t(steps * vd), uint32_t(n + 200));
                std::vector<float> o = test::random_floats(size_t(rows * vd), 11);
                const std::vector<float> o_before = o;
                kern->accumulate_bf16(p.data(), kt_keys / 2, rows, vp.data(), n, o.data(), vd);
                double worst_s = 0, worst_o = 0;
                for (int64_t r = 0; r < rows; ++r) {
                    for (int64_t j = 0; j < n; ++j) {
                        double want = 0;
                        for (int64_t d = 0; d < hd / 2; ++d)
                            for (int half = 0; half < 2; ++half)
                                want += double(bf16_value(q[size_t(r * hd / 2 + d)], half)) *
                                        bf16_value(kt[size_t(d * kt_keys + j)], half);
                        worst_s = std::max(worst_s, std::fabs(s[size_t(r * ld_s + j)] - want));
                    }
                    for (int64_t e = 0; e < vd; ++e) {
                        double want = o_before[size_t(r * vd + e)];
                        for (int64_t t = 0; t < steps; ++t)
                            for (int half = 0; half < 2; ++half)
                                want += double(bf16_value(p[size_t(r * kt_keys / 2 + t)], half)) *
                                        bf16_value(vp[size_t(t * vd + e)], half);
                        worst_o = std::max(worst_o, std::fabs(o[size_t(r * vd + e)] - want));
                    }
                }
                CHECK(worst_s <= 1e-5); // |sums| up to ~10: F32 rounding of the running sums
                CHECK(worst_o <= 1e-5);
            }
    }
}

namespace {

// ops::attention with bf16_products on and off, on every kernel path and thread count. Off: the
// exact result. On, where the path has the BF16 products: within 3e-3 of max |ref| of the result
// on BF16-rounded operands, and farther than that from the exact one; elsewhere the same as off.
void check_bf16_attention(const attention_case & c, ops::attention_params p, const std::vector<float> & q,
                          const void * k, const void * v, const std::vector<double> & want_bf16,
                          const std::vector<double> & want_exact) {
    const auto native = ops::detail::avx512_attention_kernels();
    for (const attention_path & path : attention_paths())
        for (int threads : k_thread_counts) {
            CAPTURE(std::string(path.name));
            CAPTURE(threads);
            const attention_path_scope scope(path);
            const auto * kern = path.kernels ? path.kernels : path.portable ? nullptr : native;
            std::vector<float> out(want_bf16.size()), f32(want_bf16.size()), scratch;
            p.bf16_products = true;
            ops::attention(p, q.data(), c.n_tokens, c.pos0, k, v, out.data(), scratch, threads);
            p.bf16_products = false;
            ops::attention(p, q.data(), c.n_tokens, c.pos0, k, v, f32.data(), scratch, threads);
            CHECK(relative_error(f32, want_exact) < 1e-5);
            if (kern && kern->scores_kt_bf16) {
                const double err = relative_error(out, want_bf16), off = relative_error(out, want_exact);
                CHECK_MESSAGE(err < 3e-3, fmt::format("{:.3g} of max |ref| from BF16 operands", err));
                CHECK_MESSAGE(off > 3e-3, fmt::format("only {:.3g} from the exact result", off));
            } else {
                CHECK(out == f32);
            }
        }
}

} // namespace

TEST_CASE("attention with BF16 products multiplies BF16-rounded operands, where a set has them, and is the F32 "
          "path elsewhere" *
          doctest::timeout(120)) {
    // Ragged key blocks, sub-blocks of 96 rows inside 512-row tasks (300 and 600 tokens), GQA
    // groups (sub-blocks of 48 tokens) and a decode step; |q| up to 12 makes the scores' BF16
    // rounding (up to ~0.05 here) tell apart from the exact result.
    const attention_case cases[] = {
        {2, 2, 192, 128, 1, 100}, {2, 2, 192, 128, 45, 0},  {3, 3, 192, 128, 300, 513},
        {4, 2, 64, 64, 130, 70},  {1, 1, 192, 128, 600, 0},
    };
    for (size_t i = 0; i < std::size(cases); ++i) {
        const attention_case & c = cases[i];
        INFO(describe(c));
        auto in = make_attention_inputs(c, k_seeds[i % std::size(k_seeds)]);
        for (float & x : in.q) x *= 4.f;
        const float scale = attention_scale(c);
        check_bf16_attention(c, attention_params_of(c, scale), in.q, in.k.data(), in.v.data(),
                             bf16_attention_reference(c, scale, in.q, in.k, in.v),
                             attention_reference(c, scale, in.q.data(), in.k.data(), in.v.data()));
    }
}

TEST_CASE("attention with BF16 products over an F16 cache whose rows hold both keys and values (MLA's latent "
          "rows)" *
          doctest::timeout(120)) {
    // DeepSeek's absorbed form: many query heads on one kv head whose value is the first v_dim
    // floats of each key row, from an F16 cache. 32 and 48 rows a task: past every set's
    // direct_rows (tasks of fewer rows read an F16 cache directly, in F32).
    const attention_case cases[] = {{32, 1, 80, 64, 1, 200}, {48, 1, 96, 64, 3, 100}};
    for (size_t i = 0; i < std::size(cases); ++i) {
        const attention_case & c = cases[i];
        INFO(describe(c));
        auto in = make_attention_inputs(c, k_seeds[i % std::size(k_seeds)]);
        for (float & x : in.q) x *= 4.f;
        const auto cache = to_cache(in.k, dtype::f16);
        std::vector<float> values; // the first v_dim of each cached key row   [rows, v_dim]
        for (size_t r = 0; r < cache.values.size() / size_t(c.head_dim); ++r)
            values.insert(values.end(), cache.values.begin() + r * c.head_dim,
                          cache.values.begin() + r * c.head_dim + c.v_dim);
        const float scale = attention_scale(c);
        auto p = attention_params_of(c, scale);
        p.kv_type = dtype::f16;
        p.k_stride = p.v_stride = c.head_dim;
        const void * rows = cache.bytes.data();
        check_bf16_attention(c, p, in.q, rows, rows, bf16_attention_reference(c, scale, in.q, cache.values, values),
                             attention_reference(c, scale, in.q.data(), cache.values.data(), values.data()));
    }
}

TEST_CASE("attention reads a head-major cache as it reads heads side by side, bit for bit" * doctest::timeout(60)) {
    // A cache laid out [n_head_kv, n_ctx, dim] (models/kv_cache.hpp) through k_head_stride and
    // v_head_stride: the same values, so the same products in the same order.
    const attention_case cases[] = {{12, 2, 64, 64, 1, 150}, {8, 4, 32, 32, 37, 70}, {6, 3, 16, 32, 5, 0}};
    for_each_cached_case(cases, 3, [&](const attention_case & c, dtype kv_type, const attention_inputs & in) {
        const int64_t n_ctx = int64_t(in.k.size()) / (c.n_head_kv * c.head_dim); // positions in the cache
        // dim-wide rows of every head side by side -> each head's rows contiguous
        const auto head_major = [&](const std::vector<float> & rows, int64_t dim) {
            std::vector<float> out(rows.size());
            for (int64_t j = 0; j < n_ctx; ++j)
                for (int64_t h = 0; h < c.n_head_kv; ++h)
                    std::copy_n(rows.begin() + (j * c.n_head_kv + h) * dim, dim, out.begin() + (h * n_ctx + j) * dim);
            return out;
        };
        const auto k_hm = head_major(in.k, c.head_dim), v_hm = head_major(in.v, c.v_dim);
        const auto k_cache = to_cache(in.k, kv_type), v_cache = to_cache(in.v, kv_type);
        const auto k_cache_hm = to_cache(k_hm, kv_type), v_cache_hm = to_cache(v_hm, kv_type);
        const void * k_rows = k_cache.bytes.data();
        const void * v_rows = v_cache.bytes.data();
        const void * k_heads = k_cache_hm.bytes.data();
        const void * v_heads = v_cache_hm.bytes.data();
        auto p = attention_params_of(c, attention_scale(c));
        p.kv_type = kv_type;
        auto p_hm = p;
        p_hm.k_stride = c.head_dim;
        p_hm.v_stride = c.v_dim;
        p_hm.k_head_stride = n_ctx * c.head_dim;
        p_hm.v_head_stride = n_ctx * c.v_dim;
        on_every_attention_path([&](int threads) {
            const size_t n_out = size_t(c.n_tokens * c.n_head * c.v_dim);
            std::vector<float> want(n_out), got(n_out), scratch;
            ops::attention(p, in.q.data(), c.n_tokens, c.pos0, k_rows, v_rows, want.data(), scratch, threads);
            ops::attention(p_hm, in.q.data(), c.n_tokens, c.pos0, k_heads, v_heads, got.data(), scratch, threads);
            CHECK(got == want);
        });
    });
}

TEST_CASE("attention over some of a layer's heads (q_stride, out_stride) gives those heads' outputs of the "
          "whole layer's run" *
          doctest::timeout(60)) {
    // DeepSeek's decompressed MLA attends a group of heads at a time: q and out keep the layer's
    // token strides, K and V hold the group's heads. One thread: the same tasks in the same order,
    // so the same bits; two may split a smaller problem's keys across threads (reassociation).
    const attention_case cases[] = {{8, 8, 32, 32, 37, 70}, {12, 4, 64, 64, 5, 150}, {4, 4, 192, 128, 64, 513}};
    for_each_cached_case(cases, 5, [&](const attention_case & c, dtype kv_type, const attention_inputs & in) {
        const auto k_cache = to_cache(in.k, kv_type), v_cache = to_cache(in.v, kv_type);
        const auto p = [&] {
            auto all = attention_params_of(c, attention_scale(c));
            all.kv_type = kv_type;
            return all;
        }();
        const int64_t group = c.n_head / c.n_head_kv, kv0 = 1, n_kv_heads = c.n_head_kv / 2; // kv heads [1, 1 + n)
        auto part = p;
        part.n_head = n_kv_heads * group;
        part.n_head_kv = n_kv_heads;
        part.k_stride = c.n_head_kv * c.head_dim;
        part.v_stride = c.n_head_kv * c.v_dim;
        part.q_stride = c.n_head * c.head_dim;
        part.out_stride = c.n_head * c.v_dim;
        const auto * k_part = k_cache.bytes.data() + frugal::row_bytes(kv_type, kv0 * c.head_dim);
        const auto * v_part = v_cache.bytes.data() + frugal::row_bytes(kv_type, kv0 * c.v_dim);
        const int64_t q0 = kv0 * group; // first query head of the part
        on_every_attention_path([&](int threads) {
            const size_t n_out = size_t(c.n_tokens * c.n_head * c.v_dim);
            std::vector<float> whole(n_out), got(n_out, -7.f), scratch;
            ops::attention(p, in.q.data(), c.n_tokens, c.pos0, k_cache.bytes.data(), v_cache.bytes.data(),
                           whole.data(), scratch, threads);
            ops::attention(part, in.q.data() + q0 * c.head_dim, c.n_tokens, c.pos0, k_part, v_part,
                           got.data() + q0 * c.v_dim, scratch, threads);
            double worst = 0, top = 0;
            for (int64_t t = 0; t < c.n_tokens; ++t)
                for (int64_t h = 0; h < c.n_head; ++h)
                    for (int64_t e = 0; e < c.v_dim; ++e) {
                        const size_t i = size_t((t * c.n_head + h) * c.v_dim + e);
                        if (h < q0 || h >= q0 + part.n_head) {
                            REQUIRE(got[i] == -7.f); // other heads' outputs untouched
                            continue;
                        }
                        worst = std::max(worst, double(std::fabs(got[i] - whole[i])));
                        top = std::max(top, double(std::fabs(whole[i])));
                    }
            if (threads == 1) CHECK(worst == 0);
            else CHECK(worst <= 1e-5 * top);
        });
    });
}

TEST_CASE("attention over one latent cache: K rows [576] and V their first 512 values, as absorbed MLA "
          "(F32, and F16 and Q8_0 whose V is read from the widened K block)" *
          doctest::timeout(120)) {
    const int64_t n_head = 8, head_dim = 576, v_dim = 512;
    const attention_case cases[] = {
        {n_head, 1, head_dim, v_dim, 1, 0},   {n_head, 1, head_dim, v_dim, 1, 1},
        {n_head, 1, head_dim, v_dim, 1, 1000}, // with 2 threads: keys split into two ranges
        {n_head, 1, head_dim, v_dim, 7, 0},   {n_head, 1, head_dim, v_dim, 7, 513},
        {n_head, 1, head_dim, v_dim, 64, 513}, {n_head, 1, head_dim, v_dim, 300, 0},
        // DeepSeek-V2's 16 heads: a decode step's running output (16 × 512 floats) past the
        // direct path's 16-key blocks, so it reads the cache in blocks of 64
        {2 * n_head, 1, head_dim, v_dim, 1, 1000},
    };
    for (size_t i = 0; i < std::size(cases); ++i)
        for (dtype kv_type : k_kv_types)
            check_attention_case(cases[i], k_seeds[i % std::size(k_seeds)], kv_type, /*v_in_k=*/true);
}

TEST_CASE("attention refuses a cache it cannot read: another type, or Q8_0 rows that are not whole blocks") {
    const attention_case c{2, 2, 32, 32, 1, 0};
    const auto in = make_attention_inputs(c, 1);
    std::vector<float> out(64), scratch;
    const auto refused = [&](const ops::attention_params & p, const std::string & naming) {
        CAPTURE(naming);
        try {
            ops::attention(p, in.q.data(), 1, 0, in.k.data(), in.v.data(), out.data(), scratch, 1);
            FAIL("no error");
        } catch (const frugal::error & e) {
            CHECK(e.code() == status::invalid_argument);
            CHECK(std::string(e.what()).find(naming) != std::string::npos);
        }
    };
    auto p = attention_params_of(c, 1.f);
    p.kv_type = dtype::q4_0;
    refused(p, "q4_0");
    p.kv_type = dtype::q8_0;
    p.head_dim = p.v_dim = 16; // half a block
    refused(p, "head_dim is 16");
    p.head_dim = p.v_dim = 32;
    p.k_stride = 48;
    refused(p, "k_stride is 48");
}

TEST_CASE("attention with scores up to ±100 rescales its running sums without overflow" * doctest::timeout(120)) {
    // Keys grow with their position, so a row's maximum score rises block after block and the
    // running sum and output are rescaled by 2^(m_old − m_new) each time; e^100 is past float's
    // range, so a softmax without its running maximum overflows.
    const attention_case cases[] = {{12, 2, 128, 128, 1, 1000}, {12, 2, 128, 128, 64, 513}, {6, 1, 64, 64, 300, 0}};
    const double k_max_score = 100;
    for (const auto & c : cases) {
        INFO(describe(c));
        auto in = make_attention_inputs(c, 7);
        const int64_t n_kv = c.pos0 + c.n_tokens, k_row = c.n_head_kv * c.head_dim;
        for (int64_t j = 0; j < n_kv; ++j)
            for (int64_t i = 0; i < k_row; ++i) in.k[size_t(j * k_row + i)] *= float(j + 1) / float(n_kv);
        double top = 0; // max |q · k| over the pairs that meet
        for (int64_t t = 0; t < c.n_tokens; ++t)
            for (int64_t h = 0; h < c.n_head; ++h)
                for (int64_t j = 0; j <= c.pos0 + t; ++j) {
                    const float * qh = in.q.data() + (t * c.n_head + h) * c.head_dim;
                    const float * kj = in.k.data() + j * k_row + h / (c.n_head / c.n_head_kv) * c.head_dim;
                    double dot = 0;
                    for (int64_t d = 0; d < c.head_dim; ++d) dot += double(qh[d]) * kj[d];
                    top = std::max(top, std::abs(dot));
                }
        const float scale = float(k_max_score / top);
        const auto want = attention_reference(c, scale, in.q.data(), in.k.data(), in.v.data());
        // A score of magnitude S carries a few float roundings (q · scale, the products and sums):
        // about 4 · 2^-24 · S, which moves its weight, and the output, by that much relatively.
        const double tol = k_rtol + 4 * std::ldexp(k_max_score, -24);
        check_attention_runs(attention_params_of(c, scale), in.q.data(), c.n_tokens, c.pos0, in.k.data(),
                             in.v.data(), want, tol);
    }
}

TEST_CASE("attention scratch does not grow with the context depth" * doctest::timeout(60)) {
    // The last case runs on one thread at depth 10 (too small to fork) and splits its keys over
    // two threads at depth 2000.
    const attention_case shallow_cases[] = {{12, 2, 128, 128, 1, 10}, {8, 1, 64, 32, 9, 10}, {6, 1, 128, 128, 1, 10}};
    for (const auto & shallow : shallow_cases)
        for (int threads : k_thread_counts) {
            INFO(describe(shallow));
            CAPTURE(threads);
            attention_case deep = shallow;
            deep.pos0 = 2000;
            const auto p = attention_params_of(shallow, 0.1f);
            std::vector<float> scratch, out(size_t(shallow.n_tokens * shallow.n_head * shallow.v_dim));
            const auto in_shallow = make_attention_inputs(shallow, 1);
            ops::attention(p, in_shallow.q.data(), shallow.n_tokens, shallow.pos0, in_shallow.k.data(),
                           in_shallow.v.data(), out.data(), scratch, threads);
            const float * data = scratch.data();
            const size_t capacity = scratch.capacity();
            const auto in_deep = make_attention_inputs(deep, 2);
            ops::attention(p, in_deep.q.data(), deep.n_tokens, deep.pos0, in_deep.k.data(), in_deep.v.data(),
                           out.data(), scratch, threads);
            CHECK(scratch.data() == data);
            CHECK(scratch.capacity() == capacity);
        }
}

namespace {

// Largest change to each activation x[m, k] from its conversion to the dot type of weight type w
// (llama.cpp's vec_dot_type). linear converts on every path (the wide-batch one too, to stay in
// step with the small-batch kernels and llama.cpp), gemm for BF16; F32 weights use x as given.
std::vector<double> activation_error(dtype w, const float * x, int64_t m, int64_t k) {
    std::vector<double> e(size_t(m * k), 0.0);
    // Integer blocks: each element may move by `rel` times its block's largest |x|.
    const auto per_block = [&](int64_t size, double rel) {
        for (int64_t b = 0; b < m * k; b += size) {
            double amax = 0;
            for (int64_t i = b; i < b + size; ++i) amax = std::max(amax, double(std::abs(x[i])));
            std::fill(e.begin() + b, e.begin() + b + size, amax * rel);
        }
    };
    switch (w) {
    case dtype::f16: // round to nearest: 2^-11 relative, 2^-25 absolute in fp16's subnormal range
        for (size_t i = 0; i < e.size(); ++i) e[i] = std::abs(x[i]) * 0x1p-11 + 0x1p-25;
        break;
    case dtype::bf16:
        for (size_t i = 0; i < e.size(); ++i) e[i] = std::abs(x[i]) * 0x1p-8;
        break;
    case dtype::q8_0: // Q8_0 blocks of 32: q = round(x / d), d = amax/127 -> d/2; d stored as fp16 -> amax·2^-11
    case dtype::q4_0:
    case dtype::q4_0_repacked:
    case dtype::q5_0:
    case dtype::q5_0_repacked:
    case dtype::iq4_nl:
    case dtype::iq4_nl_repacked:
    case dtype::q4_1_repacked:
    case dtype::q5_1_repacked:
    case dtype::q4_1: // Q8_1
    case dtype::q5_1: // Q8_1: Q8_0's quants; its s (what m meets) is off by the block's sum of these
        per_block(k_qk, 1.0 / 254 + 0x1p-11);
        break;
    case dtype::q2_k: // Q8_K blocks of 256 (the K-quants' activation type), fp32 d: rounding only
    case dtype::q3_k:
    case dtype::iq4_xs:
    case dtype::q4_k:
    case dtype::q5_k:
    case dtype::q6_k:
        per_block(k_qk_k, 1.0 / 254);
        break;
    case dtype::f32: break;
    }
    return e;
}

// Allowed error of y = x · wᵀ: Σ|w|·e from the activation rounding (1% over for the float
// arithmetic of the conversion itself), plus k_rtol·Σ|x·w| for float accumulation (the standard
// dot-product bound, unaffected by cancellation in the result).
std::vector<double> product_bound(const float * x, const std::vector<double> & e, const float * w, int64_t m,
                                  int64_t n, int64_t k) {
    std::vector<double> bound(size_t(m * n));
    for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) {
            double rounding = 0, magnitude = 0;
            for (int64_t l = 0; l < k; ++l) {
                const double aw = std::abs(double(w[j * k + l]));
                rounding += aw * e[size_t(i * k + l)];
                magnitude += aw * std::abs(double(x[i * k + l]));
            }
            bound[size_t(i * n + j)] = 1.01 * rounding + k_rtol * magnitude;
        }
    return bound;
}

constexpr float k_sentinel = -777.f;

// Runs `product` (x[m, k] -> y[m, ldy]) on seeded x, checks the first n columns against the
// reference and that columns past n keep their contents.
void check_product(const test_weight & w, int64_t m, int64_t ldy, uint32_t seed,
                   const std::function<void(const float *, float *)> & product) {
    INFO("weight ", std::string(dtype_name(w.type)), " [", w.n, ", ", w.k, "], x [", m, ", ", w.k, "], ldy ", ldy,
         ", seed ", seed);
    const auto x = test::random_floats(size_t(m * w.k), seed);
    std::vector<float> y(size_t(m * ldy), k_sentinel);
    product(x.data(), y.data());
    std::vector<float> got(size_t(m * w.n));
    int64_t past_n_written = 0;
    for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < ldy; ++j) {
            const float v = y[size_t(i * ldy + j)];
            if (j < w.n) got[size_t(i * w.n + j)] = v;
            else past_n_written += v != k_sentinel;
        }
    CHECK(past_n_written == 0);
    const auto e = activation_error(w.type, x.data(), m, w.k);
    check_within(got.data(), ref::matmul(x.data(), w.values.data(), m, w.n, w.k),
                 product_bound(x.data(), e, w.values.data(), m, w.n, w.k));
}

void check_linear(ops::matmul_context & ctx, const test_weight & w, int64_t m, int64_t ldy, uint32_t seed) {
    CAPTURE(ctx.n_threads());
    check_product(w, m, ldy, seed, [&](const float * x, float * y) { ctx.linear(w.view(), x, m, y, ldy); });
}

// Every path of one weight type: m = 1, 3, 7 run the small-batch kernels, m >= 8 the GEMM on
// panels (where oneDNN takes them; tails of N under 64 and 16 columns here) or on the weight
// (F32) or dequantized slabs; ldy = n + 5 writes into a wider output.
void check_linear_paths(dtype t) {
    struct nk {
        int64_t n, k;
    };
    // K in whole blocks; 11 blocks: a repacked Q5_0 row's full group of 8 and its qh-word tail.
    const int64_t kb = traits(t).block_size == k_qk_k ? k_qk_k : k_qk;
    const nk shapes[] = {{1, kb}, {7, 2 * kb}, {33, 3 * kb}, {101, 4 * kb}, {17, 11 * kb}};
    const int64_t ms[] = {1, 3, 7, 8, 33, 100};
    for (int threads : k_thread_counts)
        for (bool panels : {true, false}) {
            CAPTURE(panels);
            ops::matmul_context ctx(threads); // one context for all shapes: its primitive cache sees many keys
            ctx.prefill = ops::prefill_gemm::f32; // the exact path (the BF16 one has its own test)
            ctx.prefill_panels = panels;
            ctx.small_batch = 8;
            for (const auto & s : shapes)
                for (uint32_t seed : k_seeds) {
                    const auto w = make_weight(t, s.n, s.k, seed);
                    for (int64_t m : ms)
                        for (int64_t extra : {0, 5}) check_linear(ctx, w, m, s.n + extra, seed + 1);
                }
        }
}

} // namespace

TEST_CASE("linear with f32 weights matches the reference" * doctest::timeout(60)) {
    check_linear_paths(dtype::f32);
}

TEST_CASE("linear with f16 and bf16 weights matches the reference" * doctest::timeout(60)) {
    for (dtype t : {dtype::f16, dtype::bf16}) check_linear_paths(t);
}

TEST_CASE("linear with q8_0, q4_0 and repacked q4_0 weights matches the reference on both paths" * doctest::timeout(60)) {
    for (dtype t : {dtype::q8_0, dtype::q4_0, dtype::q4_0_repacked}) check_linear_paths(t);
}

TEST_CASE("linear with q4_1, q5_0, q5_1 and iq4_nl weights, as stored and repacked, matches the reference on both "
          "paths" * doctest::timeout(90)) {
    for (dtype t : {dtype::q4_1, dtype::q4_1_repacked, dtype::q5_0, dtype::q5_0_repacked, dtype::q5_1, dtype::q5_1_repacked,
                    dtype::iq4_nl, dtype::iq4_nl_repacked})
        check_linear_paths(t);
}

TEST_CASE("linear with q2_k, q3_k, q4_k, q5_k, q6_k and iq4_xs weights matches the reference on both paths" *
          doctest::timeout(60)) {
    for (dtype t : {dtype::q2_k, dtype::q3_k, dtype::q4_k, dtype::q5_k, dtype::q6_k, dtype::iq4_xs}) check_linear_paths(t);
}

TEST_CASE("linear dequantizes a large weight slab by slab" * doctest::timeout(60)) {
    // K = 8192 gives slabs of 256 rows (8 MiB of f32; 248 for Q5_1, whose GEMM rows carry one
    // extra column per block), so N = 300 takes two, split evenly; in panels, four chunks of 64
    // rows and one of 44.
    const int64_t n = 300, k = 8192;
    for (dtype t : {dtype::f16, dtype::q4_0, dtype::q4_0_repacked, dtype::q4_1, dtype::q5_1}) {
        const auto w = make_weight(t, n, k, 7);
        for (int threads : k_thread_counts)
            for (bool panels : {true, false}) {
                CAPTURE(panels);
                ops::matmul_context ctx(threads);
                ctx.prefill = ops::prefill_gemm::f32; // the exact path (the BF16 one has its own test)
                ctx.prefill_panels = panels;
                for (int64_t m : {8, 20})
                    for (int64_t ldy : {n, n + 3}) check_linear(ctx, w, m, ldy, uint32_t(m));
            }
    }
    // F32 and F16 panels take K in pieces of at most 4096: K = 8960 in 3072, 3072 and 2816, each
    // piece's products added into the output.
    for (dtype t : {dtype::f32, dtype::f16}) {
        const auto w = make_weight(t, 70, 8960, 8);
        for (int threads : k_thread_counts) {
            ops::matmul_context ctx(threads);
            ctx.prefill = ops::prefill_gemm::f32;
            for (int64_t m : {8, 20}) check_linear(ctx, w, m, 73, uint32_t(m));
        }
    }
}

TEST_CASE("gemm_pack transposes 16 weight rows into a panel's columns, on every path" * doctest::timeout(60)) {
    namespace gp = ops::gemm_pack;
    constexpr int64_t panel = gp::panel_cols, group = gp::group_rows;
    for (int64_t k_words : {16, 48, 160})
        for (int64_t gap : {0, 3}) { // row stride: k_words words, or more (rows read where the file has them)
            CAPTURE(k_words);
            CAPTURE(gap);
            const int64_t stride = (k_words + gap) * 4;
            std::vector<uint32_t> rows(size_t(group * (k_words + gap)));
            std::mt19937 rng(uint32_t(k_words + gap));
            for (auto & v : rows) v = rng();
            const auto * bytes = reinterpret_cast<const std::byte *>(rows.data());
            // The group lands at columns 16..31 of the panel; the rest keeps its sentinel.
            const uint32_t sentinel = 0xdeadbeef;
            std::vector<uint32_t> want(size_t(k_words * panel), sentinel);
            for (int64_t kw = 0; kw < k_words; ++kw)
                for (int64_t r = 0; r < group; ++r)
                    want[size_t(kw * panel + 16 + r)] = rows[size_t(r * (k_words + gap) + kw)];
            std::vector<uint32_t> portable(want.size(), sentinel), dispatched(want.size(), sentinel);
            gp::detail::transpose_group_portable(bytes, stride, k_words, portable.data() + 16);
            gp::transpose_group(bytes, stride, k_words, dispatched.data() + 16);
            CHECK(portable == want);
            CHECK(dispatched == want);
            // F16 rows of k = k_words values, widened: the transpose of their F32 values.
            std::vector<uint16_t> halves(size_t(group * (k_words + gap)));
            for (auto & h : halves) h = fp32_to_fp16(std::uniform_real_distribution<float>(-4.f, 4.f)(rng));
            std::vector<float> f16_want(size_t(k_words * panel), -1.f), f16_got(f16_want.size(), -1.f);
            for (int64_t kw = 0; kw < k_words; ++kw)
                for (int64_t r = 0; r < group; ++r)
                    f16_want[size_t(kw * panel + 16 + r)] = fp16_to_fp32(halves[size_t(r * (k_words + gap) + kw)]);
            const bool direct = gp::transpose_group_f16(reinterpret_cast<const std::byte *>(halves.data()),
                                                        (k_words + gap) * 2, k_words, f16_got.data() + 16);
            CHECK(direct == ops::detail::avx512f_supported());
            if (direct) CHECK(f16_got == f16_want);
            // F32 rows of 2 · k_words values, rounded to BF16 pairs: the transpose of fp32_to_bf16's.
            std::vector<float> floats(size_t(group * 2 * (k_words + gap)));
            for (auto & f : floats) f = std::uniform_real_distribution<float>(-4.f, 4.f)(rng);
            std::vector<uint32_t> bf16_want(size_t(k_words * panel), sentinel), bf16_got(bf16_want.size(), sentinel);
            const auto pair = [](float lo, float hi) { return uint32_t(fp32_to_bf16(lo)) | uint32_t(fp32_to_bf16(hi)) << 16; };
            for (int64_t kw = 0; kw < k_words; ++kw)
                for (int64_t r = 0; r < group; ++r) {
                    const float * v = floats.data() + r * 2 * (k_words + gap) + 2 * kw;
                    bf16_want[size_t(kw * panel + 16 + r)] = pair(v[0], v[1]);
                }
            const bool fused = gp::transpose_group_bf16(floats.data(), 2 * (k_words + gap), 2 * k_words,
                                                        bf16_got.data() + 16);
            CHECK(fused == ops::detail::avx512_bf16_supported());
            if (fused) CHECK(bf16_got == bf16_want);
        }
}

TEST_CASE("round_to_bf16 rounds as fp32_to_bf16, denormals to zero, any length") {
    std::mt19937 rng(7);
    for (int64_t n : {1, 31, 32, 70}) {
        CAPTURE(n);
        std::vector<float> x(static_cast<size_t>(n));
        for (auto & v : x) v = std::uniform_real_distribution<float>(-100.f, 100.f)(rng);
        x.at(0) = 1e-39f; // an F32 denormal
        std::vector<uint16_t> got(size_t(n) + 1, 0xabcd);
        if (!ops::gemm_pack::round_to_bf16(x.data(), got.data(), n)) {
            CHECK_FALSE(ops::detail::avx512_bf16_supported());
            FRUGAL_SKIP("no AVX512-BF16 on this CPU: round_to_bf16 declines");
        }
        CHECK(got[0] == 0);
        for (int64_t i = 1; i < n; ++i) CHECK(got[size_t(i)] == fp32_to_bf16(x[size_t(i)]));
        CHECK(got[size_t(n)] == 0xabcd);
    }
}

TEST_CASE("the AMX BF16 kernel multiplies packed activations by BF16 panels into any output" * doctest::timeout(60)) {
    if (!ops::amx::bf16_available()) FRUGAL_SKIP("no AMX-BF16 on this CPU (or Linux refused its tile state)");
    namespace gp = ops::gemm_pack;
    struct shape {
        int64_t m, k, k0, kc, cols, ldy;
        bool accumulate;
    };
    // Rows and columns past whole 32 × 32 blocks; K past the kernel's 4096-value pieces; a piece
    // of a longer K added to what y holds.
    const shape shapes[] = {{37, 96, 0, 96, 70, 75, false}, {5, 64, 0, 64, 33, 33, false}, {64, 256, 0, 256, 128, 130, false},
                            {9, 4160, 0, 4160, 40, 40, false}, {33, 192, 64, 96, 64, 64, true}};
    for (const shape & sh : shapes) {
        CAPTURE(sh.m);
        CAPTURE(sh.k);
        CAPTURE(sh.cols);
        std::mt19937 rng(uint32_t(sh.m * 31 + sh.k));
        std::uniform_real_distribution<float> dist(-1.f, 1.f);
        std::vector<float> x(size_t(sh.m * sh.k)), w(size_t(sh.cols * sh.kc)); // w: [cols, kc] as weight rows
        for (auto & v : x) v = dist(rng);
        for (auto & v : w) v = dist(rng);
        // W in panels: word (kw, n) of BF16 pairs at (n / 64) · kc / 2 · 64 + kw · 64 + n % 64, zeros past cols.
        const int64_t n_panels = (sh.cols + gp::panel_cols - 1) / gp::panel_cols;
        std::vector<uint16_t> panels(size_t(n_panels * gp::panel_cols * sh.kc), 0);
        for (int64_t n = 0; n < sh.cols; ++n)
            for (int64_t kk = 0; kk < sh.kc; ++kk)
                panels[size_t(((n / 64) * (sh.kc / 2) * 64 + kk / 2 * 64 + n % 64) * 2 + kk % 2)] =
                    fp32_to_bf16(w[size_t(n * sh.kc + kk)]);
        std::vector<uint16_t> packed(size_t(ops::amx::packed_elements(sh.m, sh.k)));
        ops::amx::pack_activations(x.data(), sh.k, sh.m, sh.k, packed.data());
        std::vector<float> y(size_t(sh.m * sh.ldy));
        for (auto & v : y) v = dist(rng);
        const std::vector<float> before = y;
        ops::amx::gemm_bf16_panels(packed.data(), sh.m, sh.k, sh.k0, sh.kc, reinterpret_cast<const std::byte *>(panels.data()),
                                   sh.cols, y.data(), sh.ldy, sh.accumulate);
        // Exact products of the BF16 operands, summed in double: F32 sums stay within 1e-5 of Σ|terms|.
        std::vector<double> want(y.size()), bound(y.size());
        for (int64_t i = 0; i < sh.m; ++i)
            for (int64_t j = 0; j < sh.ldy; ++j) {
                const size_t at = size_t(i * sh.ldy + j);
                if (j >= sh.cols) { // untouched
                    want[at] = before[at];
                    continue;
                }
                double sum = sh.accumulate ? before[at] : 0, mag = std::abs(sum);
                for (int64_t kk = 0; kk < sh.kc; ++kk) {
                    const double term = double(bf16_to_fp32(fp32_to_bf16(x[size_t(i * sh.k + sh.k0 + kk)]))) *
                                        bf16_to_fp32(fp32_to_bf16(w[size_t(j * sh.kc + kk)]));
                    sum += term;
                    mag += std::abs(term);
                }
                want[at] = sum;
                bound[at] = 1e-5 * mag + 1e-6;
            }
        check_within(y.data(), want, bound);
    }
}

TEST_CASE("avx512_in_halves names the AMD family 19h CPUs with AVX-512 (Zen 4), intel_cpu Intel's, as /proc/cpuinfo does") {
    std::ifstream info("/proc/cpuinfo");
    if (!info) FRUGAL_SKIP("no /proc/cpuinfo here");
    bool amd = false, intel = false;
    int family = -1;
    for (std::string line; std::getline(info, line) && !line.empty();) { // the first CPU's lines
        if (line.rfind("vendor_id", 0) == 0) amd = line.find("AuthenticAMD") != std::string::npos;
        if (line.rfind("vendor_id", 0) == 0) intel = line.find("GenuineIntel") != std::string::npos;
        if (line.rfind("cpu family", 0) == 0) family = std::stoi(line.substr(line.find(':') + 1));
    }
    CAPTURE(amd);
    CAPTURE(family);
    CHECK(ops::detail::avx512_in_halves() == (amd && family == 25 && ops::detail::avx512f_supported()));
    CHECK(ops::detail::intel_cpu() == intel);
}

TEST_CASE("prefill takes oneDNN's panels where it multiplies on AVX-512" * doctest::timeout(60)) {
    // oneDNN 2.6.3 runs its brgemm matmul, whose panels gemm_pack writes, from AVX-512 (F32)
    // and AVX512-BF16 (BF16) on. If a oneDNN release changes that layout, the recognizer in
    // dnnl_compat.hpp refuses it and prefill falls back to slabs of rows: correct, but this fails.
    const auto isa = static_cast<unsigned>(dnnl::get_effective_cpu_isa());
    const auto has = [&](dnnl::cpu_isa want) { return (isa & unsigned(want)) == unsigned(want); };
    ops::matmul_context ctx(2);
    if (has(dnnl::cpu_isa::avx512_core)) CHECK(ctx.panels_available(dtype::f32));
    else MESSAGE("oneDNN runs below AVX-512 here: prefill takes slabs of rows");
    if (has(dnnl::cpu_isa::avx512_core_bf16)) CHECK(ctx.panels_available(dtype::bf16));
}

namespace {

float round_bf16(float v) { return bf16_to_fp32(fp32_to_bf16(v)); }

// linear with prefill = bf16 against the reference on BF16-rounded operands: every product is of
// bf16(x) and bf16(w) (w dequantized first; exact in F32), summed in F32, so only the summation
// bound separates the two. A mistake in either rounding (none, or twice through another format)
// is far above it.
void check_bf16_prefill(dtype t, int64_t n, int64_t k, int64_t m, int threads, bool panels) {
    INFO(std::string(dtype_name(t)), " [", n, ", ", k, "], m ", m, ", threads ", threads, ", panels ", panels);
    auto w = make_weight(t, n, k, uint32_t(n + k));
    const auto x = test::random_floats(size_t(m * k), uint32_t(m));
    ops::matmul_context ctx(threads);
    ctx.prefill = ops::prefill_gemm::bf16;
    ctx.prefill_panels = panels;
    ctx.small_batch = 8;
    const int64_t ldy = n + 3;
    std::vector<float> y(size_t(m * ldy), k_sentinel), got(size_t(m * n));
    ctx.linear(w.view(), x.data(), m, y.data(), ldy);
    for (int64_t i = 0; i < m; ++i) {
        std::copy_n(y.begin() + i * ldy, n, got.begin() + i * n);
        for (int64_t j = n; j < ldy; ++j) CHECK(y[size_t(i * ldy + j)] == k_sentinel);
    }
    std::vector<float> xr(x.size());
    std::transform(x.begin(), x.end(), xr.begin(), round_bf16);
    std::transform(w.values.begin(), w.values.end(), w.values.begin(), round_bf16);
    const std::vector<double> exact(xr.size(), 0.0);
    check_within(got.data(), ref::matmul(xr.data(), w.values.data(), m, n, k),
                 product_bound(xr.data(), exact, w.values.data(), m, n, k));
}

} // namespace

TEST_CASE("bf16 prefill multiplies BF16-rounded weights and activations, in every type" * doctest::timeout(120)) {
    // Without a native BF16 matmul (AVX512-BF16, AMX) the BF16 operands are widened to F32: the
    // same products, so this test holds on either.
    for (dtype t : {dtype::bf16, dtype::q8_0, dtype::q4_0, dtype::q4_0_repacked, dtype::q5_0, dtype::q5_0_repacked,
                    dtype::iq4_nl, dtype::iq4_nl_repacked, dtype::iq4_xs, dtype::q2_k, dtype::q3_k, dtype::q4_k, dtype::q5_k, dtype::q6_k}) {
        const int64_t kb = traits(t).block_size == k_qk_k ? k_qk_k : k_qk;
        for (int threads : k_thread_counts)
            for (int64_t m : {8, 37})
                for (bool panels : {true, false}) check_bf16_prefill(t, 33, 4 * kb, m, threads, panels);
    }
    // K = 8192: 512-row BF16 slabs, so N = 600 takes two; in panels, nine chunks of 64 and one of 24.
    for (dtype t : {dtype::bf16, dtype::q8_0, dtype::q4_0_repacked})
        for (bool panels : {true, false}) check_bf16_prefill(t, 600, 8192, 9, 2, panels);
    // BF16 panels take a BF16 weight's K in pieces of at most 8192: K = 8960 in 4608 and 4352.
    check_bf16_prefill(dtype::bf16, 70, 8960, 9, 2, true);
}

TEST_CASE("bf16 prefill leaves q4_1, q5_1 and f16 on the exact path, f16 on AMX in hi and lo parts" * doctest::timeout(60)) {
    // Q4_1's and Q5_1's block offsets meet Q8_1's block sums as extra F32 columns, which BF16
    // would round; F16 would lose 3 mantissa bits per weight, unless split in two BF16 parts.
    const bool amx = ops::amx::bf16_available();
    for (dtype t : {dtype::q4_1, dtype::q5_1, dtype::f16})
        for (bool panels : {true, false}) {
            CAPTURE(std::string(dtype_name(t)));
            CAPTURE(panels);
            const auto w = make_weight(t, 17, 4 * k_qk, 2);
            const int64_t m = 9;
            const auto x = test::random_floats(size_t(m * w.k), 3);
            std::vector<float> y_f32(size_t(m * w.n)), y_bf16(size_t(m * w.n));
            for (auto [g, y] : {std::pair{ops::prefill_gemm::f32, &y_f32}, std::pair{ops::prefill_gemm::bf16, &y_bf16}}) {
                ops::matmul_context ctx(1);
                ctx.prefill = g;
                ctx.prefill_panels = panels;
                ctx.small_batch = 8;
                ctx.linear(w.view(), x.data(), m, y->data());
            }
            if (t != dtype::f16 || !amx || !panels) CHECK(y_f32 == y_bf16);
            else CHECK(y_f32 != y_bf16); // the split path ran: it does not round x to F16 as f32 does
        }
    if (!amx) FRUGAL_SKIP("no AMX-BF16 here: F16 stays on the f32 path");
    // hi·hi + hi·lo + lo·hi of the split parts: within 2^-16 of each exact product of the
    // unrounded activations and the F16 weights. Rows and columns past whole tiles; K = 8960 in
    // three pieces of the panels; the row-at-a-time split for the last 6 of 70 columns.
    struct shape {
        int64_t n, k, m;
    };
    for (const shape sh : {shape{17, 128, 9}, shape{70, 8960, 40}})
        for (int threads : k_thread_counts) {
            CAPTURE(sh.n);
            CAPTURE(sh.k);
            CAPTURE(threads);
            const auto w = make_weight(dtype::f16, sh.n, sh.k, 4);
            const auto x = test::random_floats(size_t(sh.m * sh.k), 5);
            ops::matmul_context ctx(threads);
            ctx.prefill = ops::prefill_gemm::bf16;
            ctx.small_batch = 8;
            std::vector<float> y(size_t(sh.m * sh.n));
            ctx.linear(w.view(), x.data(), sh.m, y.data());
            std::vector<float> xa(x.size()), wa(w.values.size());
            std::transform(x.begin(), x.end(), xa.begin(), [](float v) { return std::abs(v); });
            std::transform(w.values.begin(), w.values.end(), wa.begin(), [](float v) { return std::abs(v); });
            auto bound = ref::matmul(xa.data(), wa.data(), sh.m, sh.n, sh.k);
            for (double & b : bound) b = 2e-5 * b + 1e-7;
            check_within(y.data(), ref::matmul(x.data(), w.values.data(), sh.m, sh.n, sh.k), bound);
        }
}

TEST_CASE("linear_consuming gives linear's results on every path, x in place where it can" * doctest::timeout(60)) {
    // m = 3 runs the row kernels, m = 20 the GEMM; Q5_1's rounded rows are longer than x's, so
    // only its f32 path cannot round in place.
    const int64_t n = 33, k = 4 * k_qk_k;
    for (dtype t : {dtype::f32, dtype::f16, dtype::bf16, dtype::q8_0, dtype::q4_0, dtype::q4_1, dtype::q5_1,
                    dtype::q2_k, dtype::q3_k, dtype::q4_k, dtype::q6_k, dtype::iq4_xs}) {
        const auto w = make_weight(t, n, k, 5);
        for (ops::prefill_gemm path : {ops::prefill_gemm::f32, ops::prefill_gemm::bf16, ops::prefill_gemm::int8,
                                       ops::prefill_gemm::q8})
            for (int64_t m : {3, 20}) {
                CAPTURE(std::string(dtype_name(t)));
                CAPTURE(std::string(ops::prefill_gemm_name(path)));
                CAPTURE(m);
                ops::matmul_context ctx(2);
                ctx.prefill = path;
                ctx.small_batch = 8;
                const auto x = test::random_floats(size_t(m * k), 6);
                auto x_given = x;
                std::vector<float> want(size_t(m * n)), got(size_t(m * n));
                ctx.linear(w.view(), x.data(), m, want.data(), n);
                ctx.linear_consuming(w.view(), x_given.data(), m, got.data());
                CHECK(got == want);
                // The f32 path rounds a quantized type's activations in x itself.
                const bool in_place = m >= ctx.small_batch && t != dtype::f32 && !ops::has_block_offsets(t) &&
                                      ops::prefill_gemm_for(path, t) == ops::prefill_gemm::f32;
                CHECK((x_given != x) == in_place);
            }
    }
}

TEST_CASE("linear's wide-batch path multiplies the row kernels' products" * doctest::timeout(60)) {
    // For these types both paths multiply the same rounded activations and weights, each product
    // exact or rounded once (the K-quants' dequantized d·sc·q - dmin·mn rounds more), so only the
    // order of the float sums differs. Positive activations keep Q8_1's block sums from
    // cancelling and Q4_1's and Q5_1's offsets are made to dominate: an m paired with anything
    // but Q8_1's s would be off by s's fp16 rounding (~2^-12), far above the summation bound.
    const int64_t n = 33, m = 9, k = 4 * k_qk;
    for (dtype t : {dtype::f16, dtype::bf16, dtype::q8_0, dtype::q4_0, dtype::q4_0_repacked, dtype::q4_1,
                    dtype::q4_1_repacked, dtype::q5_0, dtype::q5_0_repacked, dtype::q5_1, dtype::q5_1_repacked,
                    dtype::iq4_nl, dtype::iq4_nl_repacked}) {
        CAPTURE(std::string(dtype_name(t)));
        auto w = make_weight(t, n, k, 3);
        const auto dominant_offsets = [&]<class Block>(Block * blocks) {
            for (int64_t b = 0; b < n * k / k_qk; ++b) blocks[b].m = fp32_to_fp16(0.25f);
            ops::dequantize_row(t, w.bytes.data(), w.values.data(), n * k);
        };
        if (t == dtype::q4_1) dominant_offsets(reinterpret_cast<block_q4_1 *>(w.bytes.data()));
        if (t == dtype::q5_1) dominant_offsets(reinterpret_cast<block_q5_1 *>(w.bytes.data()));
        const auto x = test::random_floats(size_t(m * k), 4, 0.f, 1.f);
        std::vector<float> rows(size_t(m * n)), wide(size_t(m * n));
        std::vector<std::byte> scratch;
        ops::matmul_rows(w.view(), x.data(), m, rows.data(), scratch, 1);
        ops::matmul_context ctx(1);
        ctx.prefill = ops::prefill_gemm::f32; // the exact path (the BF16 one has its own test)
        ctx.small_batch = 8;
        ctx.linear(w.view(), x.data(), m, wide.data(), n);
        // Two float sums of k + k/32 terms (Q5_1's offsets add a column per block) and a rounding
        // per product or block: (2 (k + k/32) + 8) ulps of sum |product|, itself at most
        // sum |w| (|x| + e).
        const auto e = activation_error(t, x.data(), m, k);
        std::vector<double> want(rows.begin(), rows.end()), bound(size_t(m * n));
        for (int64_t i = 0; i < m; ++i)
            for (int64_t j = 0; j < n; ++j) {
                double magnitude = 0;
                for (int64_t l = 0; l < k; ++l)
                    magnitude += std::abs(double(w.values[size_t(j * k + l)])) *
                                 (double(x[size_t(i * k + l)]) + e[size_t(i * k + l)]);
                bound[size_t(i * n + j)] = double(2 * (k + k / k_qk) + 8) * 0x1p-24 * 1.01 * magnitude;
            }
        check_within(wide.data(), want, bound);
    }
}

TEST_CASE("linear reuses cached primitives across calls with other m and shapes" * doctest::timeout(60)) {
    struct call {
        int which; // weight index
        int64_t m;
    };
    const call calls[] = {{0, 33}, {0, 1}, {1, 100}, {0, 100}, {1, 3}, {1, 8}, {0, 33}};
    for (dtype t : {dtype::f32, dtype::q8_0}) {
        const test_weight weights[] = {make_weight(t, 33, 64, 5), make_weight(t, 17, 128, 6)};
        ops::matmul_context ctx(2);
        ctx.prefill = ops::prefill_gemm::f32; // the exact path (the BF16 one has its own test)
        for (const auto & c : calls) check_linear(ctx, weights[c.which], c.m, weights[c.which].n, uint32_t(c.m));
    }
}

namespace {

// make_weight(t, k, n)'s [n, k] matrix used as [K, N] (rows of N stored elements): the stored
// weight, and values = its transpose [N, K] as ref::matmul takes it.
std::pair<test_weight, test_weight> transposed_weight(dtype t, int64_t k, int64_t n, uint32_t seed) {
    auto stored = make_weight(t, k, n, seed);
    test_weight w{t, n, k, {}, std::vector<float>(size_t(n * k))};
    for (int64_t r = 0; r < k; ++r)
        for (int64_t c = 0; c < n; ++c) w.values[size_t(c * k + r)] = stored.values[size_t(r * n + c)];
    return {std::move(stored), std::move(w)};
}

// y [m, ldy] from linear_t(_many) against x · w on the operands as linear_t_gemm rounds them
// (BF16: x and w rounded to BF16; F32: as they are), within the F32 summation bound; the
// columns past N untouched.
void check_linear_t(const ops::matmul_context & ctx, const test_weight & w, const std::vector<float> & x, int64_t m,
                    const std::vector<float> & y, int64_t ldy) {
    const bool bf16 = ctx.linear_t_gemm(w.type) == ops::prefill_gemm::bf16;
    INFO(std::string(dtype_name(w.type)), bf16 ? " in bf16" : " in f32", ", m ", m, " k ", w.k, " n ", w.n);
    std::vector<float> got(size_t(m * w.n)), xr = x, wr = w.values;
    for (int64_t i = 0; i < m; ++i) {
        std::copy_n(y.begin() + i * ldy, w.n, got.begin() + i * w.n);
        for (int64_t j = w.n; j < ldy; ++j) CHECK(y[size_t(i * ldy + j)] == k_sentinel);
    }
    if (bf16) {
        std::transform(xr.begin(), xr.end(), xr.begin(), round_bf16);
        std::transform(wr.begin(), wr.end(), wr.begin(), round_bf16);
    }
    const std::vector<double> exact(xr.size(), 0.0);
    check_within(got.data(), ref::matmul(xr.data(), wr.data(), m, w.n, w.k),
                 product_bound(xr.data(), exact, wr.data(), m, w.n, w.k));
}

} // namespace

TEST_CASE("linear_t multiplies by a weight stored [K, N], in every dtype, in F32 or BF16" * doctest::timeout(60)) {
    struct mkn {
        int64_t m, k, n, ldy;
    };
    const mkn shapes[] = {{1, 64, 32, 32}, {5, 96, 64, 70}, {40, 128, 96, 96}}; // N: whole quant blocks
    for (const auto prefill : {ops::prefill_gemm::f32, ops::prefill_gemm::bf16, ops::default_prefill_gemm()})
        for (dtype t : {dtype::f32, dtype::f16, dtype::bf16, dtype::q8_0, dtype::q4_0, dtype::q4_0_repacked})
            for (int threads : k_thread_counts) {
                ops::matmul_context ctx(threads);
                ctx.prefill = prefill;
                CAPTURE(threads);
                CAPTURE(std::string(ops::prefill_gemm_name(prefill)));
                for (const auto & s : shapes) {
                    const auto [stored, w] = transposed_weight(t, s.k, s.n, uint32_t(s.m));
                    const auto x = test::random_floats(size_t(s.m * s.k), uint32_t(s.n));
                    std::vector<float> y(size_t(s.m * s.ldy), k_sentinel);
                    ctx.linear_t(stored.view(), x.data(), s.m, y.data(), s.ldy);
                    check_linear_t(ctx, w, x, s.m, y, s.ldy);
                }
            }
}

TEST_CASE("linear_t takes BF16 only for the types and prefill settings that allow it" * doctest::timeout(60)) {
    ops::matmul_context ctx(1);
    const auto native = ops::prefill_gemm_native(ops::prefill_gemm::bf16) ? ops::prefill_gemm::bf16 : ops::prefill_gemm::f32;
    for (dtype t : {dtype::f32, dtype::f16, dtype::q4_1, dtype::q5_1}) // exact, or losing bits BF16 would drop
        for (const auto prefill : {ops::prefill_gemm::f32, ops::prefill_gemm::bf16, ops::prefill_gemm::q8}) {
            ctx.prefill = prefill;
            CHECK(ctx.linear_t_gemm(t) == ops::prefill_gemm::f32);
        }
    for (dtype t : {dtype::bf16, dtype::q8_0, dtype::q4_0, dtype::q4_k, dtype::q6_k}) {
        CAPTURE(std::string(dtype_name(t)));
        ctx.prefill = ops::prefill_gemm::f32; // asked for exact arithmetic
        CHECK(ctx.linear_t_gemm(t) == ops::prefill_gemm::f32);
        ctx.prefill = ops::prefill_gemm::bf16; // asked for BF16: the same rounding, native or not
        CHECK(ctx.linear_t_gemm(t) == ops::prefill_gemm::bf16);
        for (const auto prefill : {ops::prefill_gemm::q8, ops::prefill_gemm::int8}) { // no path of their own here
            ctx.prefill = prefill;
            CHECK(ctx.linear_t_gemm(t) == native);
        }
    }
}

TEST_CASE("linear_t_many multiplies one x by several weights stored [K, N], each as linear_t would" *
          doctest::timeout(60)) {
    // Types of both arithmetics in one call (x is rounded to BF16 once, for the BF16 ones only),
    // outputs interleaved in one buffer as MLA's heads are; a product naming another input, or of
    // another K, is refused.
    const int64_t m = 37, k = 64, ldy = 2 * 96 + 5;
    const dtype types[] = {dtype::q4_0, dtype::f16, dtype::q8_0, dtype::f32, dtype::bf16};
    for (const auto prefill : {ops::prefill_gemm::f32, ops::prefill_gemm::bf16, ops::default_prefill_gemm()})
        for (int threads : k_thread_counts) {
            ops::matmul_context ctx(threads);
            ctx.prefill = prefill;
            CAPTURE(threads);
            CAPTURE(std::string(ops::prefill_gemm_name(prefill)));
            const auto x = test::random_floats(size_t(m * k), 7);
            std::vector<std::pair<test_weight, test_weight>> weights;
            std::vector<std::vector<float>> ys;
            std::vector<ops::row_product> products;
            for (size_t i = 0; i < std::size(types); ++i) {
                weights.push_back(transposed_weight(types[i], k, 32 * int64_t(1 + i % 3), uint32_t(40 + i)));
                ys.emplace_back(size_t(m * ldy), k_sentinel);
            }
            for (size_t i = 0; i < weights.size(); ++i) products.push_back({weights[i].first.view(), ys[i].data(), ldy});
            ctx.linear_t_many(products, x.data(), m);
            for (size_t i = 0; i < weights.size(); ++i) check_linear_t(ctx, weights[i].second, x, m, ys[i], ldy);

            const auto other_k = transposed_weight(dtype::q4_0, 2 * k, 32, 9);
            products.push_back({other_k.first.view(), ys[0].data(), ldy});
            CHECK_THROWS_AS(ctx.linear_t_many(products, x.data(), m), frugal::error);
            products.back() = {weights[0].first.view(), ys[0].data(), ldy, x.data() + 1};
            CHECK_THROWS_AS(ctx.linear_t_many(products, x.data(), m), frugal::error);
        }
}

TEST_CASE("linear_t_one_row multiplies one row by several weights stored [K, N], in every dtype" *
          doctest::timeout(60)) {
    // A decode step's per-head blocks: products of different shapes, each on its own input row,
    // against the double-precision reference; fewer and more products than threads.
    struct kn {
        int64_t k, n;
    };
    const kn shapes[] = {{64, 32}, {96, 64}, {128, 96}, {32, 128}, {64, 32}}; // N: whole quant blocks
    for (dtype t : {dtype::f32, dtype::f16, dtype::bf16, dtype::q8_0, dtype::q4_0, dtype::q4_0_repacked})
        for (int threads : k_thread_counts)
            for (size_t count : {size_t(1), std::size(shapes)}) {
                CAPTURE(threads);
                CAPTURE(count);
                ops::matmul_context ctx(threads);
                std::vector<test_weight> stored;
                std::vector<std::vector<float>> x, y;
                std::vector<ops::row_product> products;
                for (size_t j = 0; j < count; ++j) {
                    const kn s = shapes[j];
                    stored.push_back(make_weight(t, s.k, s.n, uint32_t(40 + j))); // rows of N stored elements
                    x.push_back(test::random_floats(size_t(s.k), uint32_t(50 + j)));
                    y.emplace_back(size_t(s.n), k_sentinel);
                }
                for (size_t j = 0; j < count; ++j) products.push_back({stored[j].view(), y[j].data(), 0, x[j].data()});
                ctx.linear_t_one_row(products);
                for (size_t j = 0; j < count; ++j) {
                    const kn s = shapes[j];
                    std::vector<float> transposed(size_t(s.n * s.k)); // [N, K]: ref::matmul's orientation
                    for (int64_t r = 0; r < s.k; ++r)
                        for (int64_t c = 0; c < s.n; ++c)
                            transposed[size_t(c * s.k + r)] = stored[j].values[size_t(r * s.n + c)];
                    const std::vector<double> exact_activations(size_t(s.k), 0.0);
                    check_within(y[j].data(), ref::matmul(x[j].data(), transposed.data(), 1, s.n, s.k),
                                 product_bound(x[j].data(), exact_activations, transposed.data(), 1, s.n, s.k));
                }
            }
    ops::matmul_context ctx(1);
    const auto w = make_weight(dtype::f32, 4, 8, 1);
    std::vector<float> y(8);
    const ops::row_product orphan[] = {{w.view(), y.data()}};
    CHECK_THROWS_WITH_AS(ctx.linear_t_one_row(orphan), doctest::Contains("has no input"), frugal::error);
}

namespace {

void check_gemm(dtype t) {
    struct mnk {
        int64_t m, n, k, ldy;
    };
    // Small: without AVX512-BF16 oneDNN emulates the BF16 GEMM.
    const mnk shapes[] = {{1, 7, 32, 7}, {3, 17, 64, 20}, {8, 33, 96, 33}};
    for (int threads : k_thread_counts) {
        ops::matmul_context ctx(threads);
        CAPTURE(threads);
        for (const auto & s : shapes)
            for (uint32_t seed : k_seeds) {
                const auto w = make_weight(t, s.n, s.k, seed);
                check_product(w, s.m, s.ldy, seed + 1, [&](const float * x, float * y) {
                    ctx.gemm(t, w.bytes.data(), s.n, s.k, x, s.m, y, s.ldy);
                });
            }
    }
}

} // namespace

TEST_CASE("gemm with f32 weights matches the reference" * doctest::timeout(60)) { check_gemm(dtype::f32); }

TEST_CASE("gemm with bf16 weights matches the reference" * doctest::timeout(60)) {
    // oneDNN 2.x implements BF16 matmul only from AVX512 on; elsewhere gemm widens to F32.
    check_gemm(dtype::bf16);
}

TEST_CASE("matmul rejects invalid arguments with frugal::error" * doctest::timeout(60)) {
    ops::matmul_context ctx(1);
    const auto w = make_weight(dtype::f32, 7, 32, 1);
    const auto h = make_weight(dtype::f16, 7, 32, 1);
    std::vector<float> x(2 * 32, 0.5f), y(2 * 7);
    const std::function<void()> calls[] = {
        [&] { ctx.linear(w.view(), x.data(), 2, y.data(), 6); },                         // ldy < N, GEMM path
        [&] { ctx.linear(h.view(), x.data(), 2, y.data(), 6); },                         // ldy < N, small batch
        [&] { ctx.gemm(dtype::f16, h.bytes.data(), 7, 32, x.data(), 2, y.data(), 7); },  // gemm: f32/bf16 only
        [&] { ctx.gemm(dtype::q8_0, h.bytes.data(), 7, 32, x.data(), 2, y.data(), 7); },
        [&] { ctx.gemm(dtype::f32, w.bytes.data(), 7, 32, x.data(), 2, y.data(), 6); },  // gemm: ldy < n
        [&] { ctx.gemm(dtype::f32, w.bytes.data(), 7, 32, x.data(), 0, y.data(), 7); },  // gemm: m = 0
    };
    for (size_t i = 0; i < std::size(calls); ++i) {
        CAPTURE(i);
        try {
            calls[i]();
            FAIL_CHECK("no exception");
        } catch (const error & e) {
            CHECK(e.code() == status::invalid_argument);
        }
    }
}
