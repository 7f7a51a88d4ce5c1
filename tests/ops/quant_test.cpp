// quant_test.cpp - lib/ops/quant kernels against tests/reference/quant_ref on random rows, both
// instruction-set paths, plus the fp16/bf16 conversions of dtype.hpp on hand-checked values.
#include <doctest/doctest.h>
#include <dlfcn.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <type_traits>

#include "common/test_support.hpp"
#include "ops/quant.hpp"
#include "reference/quant_ref.hpp"
#include "util/error.hpp"

using namespace frugal;

namespace {

constexpr dtype k_types[] = {dtype::f32,    dtype::f16,  dtype::bf16,   dtype::q8_0,   dtype::q4_0,
                             dtype::q4_1,   dtype::q5_0, dtype::q5_1,   dtype::iq4_nl, dtype::iq4_xs,
                             dtype::q2_k,   dtype::q3_k, dtype::q4_k,   dtype::q5_k,   dtype::q6_k};
constexpr uint32_t k_seeds[] = {1, 7, 2024};
constexpr int64_t k_row_counts[] = {1, 3, 7, 33};

// Row lengths per block size; plain types include lengths that leave SIMD tails.
std::vector<int64_t> sizes_for(dtype t) {
    switch (traits(t).block_size) {
    case 1: return {1, 7, 32, 100, 768};
    case k_qk: return {32, 96, 256, 768};
    default: return {256, 512, 2304};
    }
}

// Tolerance of the kernels against the double-precision reference on the same quantized inputs:
// float rounding of the block scales and of the accumulation, far below any indexing/bit error.
constexpr double k_tight_rtol = 1e-6; // observed worst ~1.5e-8

// The paths to exercise: whatever the CPU selects, then the forced scalar one.
std::vector<bool> paths() {
    ops::detail::force_scalar(false);
    if (ops::detail::avx2_active()) return {false, true};
    return {true};
}

// Random rows of type t. Quantized types get random bytes (all quant and sub-scale bit patterns),
// with the fp16 (super-)scales and offsets replaced by finite values of magnitude 1e-4..1 and
// random sign.
std::vector<uint8_t> random_weights(dtype t, int64_t rows, int64_t n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::vector<uint8_t> w(size_t(rows * row_bytes(t, n)));
    const auto values = test::random_floats(size_t(rows * n), seed ^ 0x9E3779B9u);
    switch (t) {
    case dtype::f32: std::memcpy(w.data(), values.data(), w.size()); return w;
    case dtype::f16:
    case dtype::bf16:
        for (size_t i = 0; i < values.size(); ++i) {
            const uint16_t h = t == dtype::f16 ? fp32_to_fp16(values[i]) : fp32_to_bf16(values[i]);
            std::memcpy(w.data() + 2 * i, &h, 2);
        }
        return w;
    default: break;
    }
    std::uniform_int_distribution<int> byte(0, 255);
    for (auto & b : w) b = uint8_t(byte(rng));
    std::uniform_real_distribution<float> log_mag(std::log(1e-4f), 0.f);
    std::vector<size_t> scale_offsets;
    switch (t) {
    case dtype::q8_0:
    case dtype::q4_0:
    case dtype::q5_0:
    case dtype::iq4_nl:
    case dtype::iq4_xs: scale_offsets = {0}; break;
    case dtype::q4_1:
    case dtype::q5_1:
    case dtype::q4_k:
    case dtype::q5_k: scale_offsets = {0, 2}; break;
    case dtype::q6_k: scale_offsets = {208}; break;
    case dtype::q2_k: scale_offsets = {80, 82}; break;
    case dtype::q3_k: scale_offsets = {108}; break;
    default: break;
    }
    const auto block_bytes = size_t(traits(t).block_bytes);
    for (size_t b = 0; b < w.size(); b += block_bytes) {
        for (size_t off : scale_offsets) {
            const float v = std::exp(log_mag(rng)) * (byte(rng) & 1 ? 1.f : -1.f);
            const uint16_t h = fp32_to_fp16(v);
            std::memcpy(w.data() + b + off, &h, 2);
        }
    }
    return w;
}

std::vector<std::byte> quantize_act(dtype t, const float * x, int64_t n) {
    std::vector<std::byte> a(ops::activation_bytes(t, n));
    ops::quantize_activation(t, x, a.data(), n);
    return a;
}

// |a_i - x_i| bound for the activation conversion of weight type t (quantization is the only
// difference between the quantized dot and the exact float dot of the same weights).
double activation_error_bound(dtype t, const float * x, int64_t n, int64_t i) {
    const double tiny = std::ldexp(1.0, -24); // fp16 subnormal spacing, absolute
    switch (t) {
    case dtype::f32: return 0.0;
    case dtype::f16: return std::fabs(x[i]) * std::ldexp(1.0, -11) + tiny;
    case dtype::bf16: return std::fabs(x[i]) * std::ldexp(1.0, -8) + std::ldexp(1.0, -133);
    default: break;
    }
    // Q8_0/Q8_1/Q8_K: half a step (amax/254) plus the fp16 rounding of Q8_0's d (<= 127 * d * 2^-11):
    // one full step amax/127 covers both. Q8_1's s (the activation sum Q5_1's m meets) is off by
    // at most the sum of these over its block plus its own fp16 rounding (<= 32 * amax * 2^-11),
    // so amax/127 per element covers it too.
    const int64_t block = traits(t).block_size == k_qk ? k_qk : k_qk_k;
    const int64_t b0 = i / block * block;
    double amax = 0.0;
    for (int64_t j = b0; j < std::min(n, b0 + block); ++j) amax = std::max(amax, double(std::fabs(x[j])));
    return amax / 127.0;
}

// |w_i| for the activation error bound. Q4_1's and Q5_1's offset m meets its own error (through
// s) apart from d·q, so |d·q| + |m| <= |w_i| + 2|m| counts instead.
double weight_magnitude(dtype t, const uint8_t * row, const std::vector<float> & wf, int64_t i) {
    double mag = std::fabs(wf[size_t(i)]);
    if (t == dtype::q4_1 || t == dtype::q5_1) { // m right after d
        const uint8_t * b = row + i / k_qk * traits(t).block_bytes;
        mag += 2 * std::fabs(fp16_to_fp32(uint16_t(b[2] | b[3] << 8)));
    }
    return mag;
}

// Blocks of a Q8_0 or Q8_1 activation row that differ from the reference (d, qs, and Q8_1's s).
template <class B>
int q8_mismatches(const B * b, const ref::q8_row & want, int64_t n) {
    int bad = 0;
    for (int64_t ib = 0; ib < n / k_qk; ++ib) {
        bad += fp16_to_fp32(b[ib].d) != want.d[size_t(ib)];
        bad += std::memcmp(b[ib].qs, want.qs.data() + ib * k_qk, k_qk) != 0;
        if constexpr (std::is_same_v<B, ops::block_q8_1>) bad += fp16_to_fp32(b[ib].s) != want.s[size_t(ib)];
    }
    return bad;
}

void check_invalid(const std::function<void()> & fn, const std::string & needle) {
    try {
        fn();
        FAIL("expected frugal::error mentioning " << needle);
    } catch (const frugal::error & e) {
        CHECK(e.code() == status::invalid_argument);
        CHECK_MESSAGE(std::string(e.what()).find(needle) != std::string::npos, e.what());
    }
}

// Weights i < types.size() of random_weights(types[i], rows[i], row_len[i], seed + i) and their views.
struct random_weight_set {
    std::vector<std::vector<uint8_t>> bytes;
    std::vector<raw_view> views;
    random_weight_set(std::span<const dtype> types, std::span<const int64_t> rows, std::span<const int64_t> row_len,
                      uint32_t seed) {
        for (size_t i = 0; i < types.size(); ++i) {
            bytes.push_back(random_weights(types[i], rows[i], row_len[i], seed + uint32_t(i)));
            views.push_back({types[i], reinterpret_cast<const std::byte *>(bytes.back().data()), shape{rows[i], row_len[i]}});
        }
    }
};

} // namespace

TEST_CASE("FRUGAL_MAX_CPU_ISA's values" * doctest::timeout(60)) {
    namespace detail = ops::detail;
    CHECK(detail::parse_cpu_isa("baseline") == detail::cpu_isa::baseline);
    CHECK(detail::parse_cpu_isa("avx2") == detail::cpu_isa::avx2);
    CHECK(detail::parse_cpu_isa("AVX2") == detail::cpu_isa::avx2);
    CHECK(detail::parse_cpu_isa("avx512") == detail::cpu_isa::avx512);
    for (const char * other : {"", "avx", "avx512_vnni", "avx2 ", "sse4.1"}) CHECK_FALSE(detail::parse_cpu_isa(other));
    const char * env = std::getenv("FRUGAL_MAX_CPU_ISA");
    if (!env || !detail::parse_cpu_isa(env)) CHECK(detail::max_cpu_isa() == detail::cpu_isa::avx512); // no cap
}

TEST_CASE("fp16 conversions: hand-checked values" * doctest::timeout(60)) {
    CHECK(fp32_to_fp16(1.f) == 0x3C00);
    CHECK(fp32_to_fp16(-2.f) == 0xC000);
    CHECK(fp32_to_fp16(0.f) == 0x0000);
    CHECK(fp32_to_fp16(-0.f) == 0x8000);
    CHECK(fp16_to_fp32(0x3555) == 0.333251953125f);
    // Largest finite: 65504; 65520 is the midpoint to 2^16 and ties to "even" = infinity.
    CHECK(fp32_to_fp16(65504.f) == 0x7BFF);
    CHECK(fp16_to_fp32(0x7BFF) == 65504.f);
    CHECK(fp32_to_fp16(65519.996f) == 0x7BFF);
    CHECK(fp32_to_fp16(65520.f) == 0x7C00);
    CHECK(fp32_to_fp16(-1e6f) == 0xFC00);
    // Subnormals: 0x0001 = 2^-24, 0x03FF = 1023 * 2^-24, 0x0400 = 2^-14 (smallest normal).
    CHECK(fp16_to_fp32(0x0001) == std::ldexp(1.f, -24));
    CHECK(fp16_to_fp32(0x8001) == -std::ldexp(1.f, -24));
    CHECK(fp16_to_fp32(0x03FF) == std::ldexp(1023.f, -24));
    CHECK(fp16_to_fp32(0x0400) == std::ldexp(1.f, -14));
    CHECK(fp32_to_fp16(std::ldexp(1.f, -24)) == 0x0001);
    CHECK(fp32_to_fp16(std::ldexp(1023.f, -24)) == 0x03FF);
    CHECK(fp32_to_fp16(std::ldexp(1.f, -26)) == 0x0000);
    // Ties to even: 2^-25 is half a unit (-> 0), 3 * 2^-25 is 1.5 units (-> 2), 1023.5 units -> 0x400.
    CHECK(fp32_to_fp16(std::ldexp(1.f, -25)) == 0x0000);
    CHECK(fp32_to_fp16(std::nextafter(std::ldexp(1.f, -25), 1.f)) == 0x0001);
    CHECK(fp32_to_fp16(std::ldexp(3.f, -25)) == 0x0002);
    CHECK(fp32_to_fp16(std::ldexp(2047.f, -25)) == 0x0400);
    CHECK(fp32_to_fp16(1.f + std::ldexp(1.f, -11)) == 0x3C00);
    CHECK(fp32_to_fp16(std::nextafter(1.f + std::ldexp(1.f, -11), 2.f)) == 0x3C01);
    CHECK(fp32_to_fp16(1.f + std::ldexp(3.f, -11)) == 0x3C02);
    // Inf and NaN.
    CHECK(fp32_to_fp16(std::numeric_limits<float>::infinity()) == 0x7C00);
    CHECK(fp32_to_fp16(-std::numeric_limits<float>::infinity()) == 0xFC00);
    const uint16_t nan_h = fp32_to_fp16(std::numeric_limits<float>::quiet_NaN());
    CHECK((nan_h & 0x7C00) == 0x7C00);
    CHECK((nan_h & 0x03FF) != 0);
    CHECK(std::isinf(fp16_to_fp32(0x7C00)));
    CHECK(fp16_to_fp32(0xFC00) == -std::numeric_limits<float>::infinity());
    CHECK(std::isnan(fp16_to_fp32(0x7E00)));
    CHECK(std::isnan(fp16_to_fp32(0x7C01)));
}

TEST_CASE("fp16 conversions: exhaustive round trip and midpoints" * doctest::timeout(60)) {
    int bad_round_trip = 0, bad_midpoint = 0;
    for (uint32_t h = 0; h < 0x10000; ++h) {
        const float f = fp16_to_fp32(uint16_t(h));
        if (std::isnan(f)) continue;
        bad_round_trip += fp32_to_fp16(f) != h;
        // The midpoint to the next larger-magnitude half is exact in float and must tie to even.
        if ((h & 0x7FFF) < 0x7BFF) {
            const float next = fp16_to_fp32(uint16_t(h + 1));
            const float mid = (f + next) / 2;
            const uint32_t even = (h & 1) ? h + 1 : h;
            bad_midpoint += fp32_to_fp16(mid) != even;
            bad_midpoint += fp32_to_fp16(std::nextafter(mid, next)) != h + 1;
            bad_midpoint += fp32_to_fp16(std::nextafter(mid, f)) != h;
        }
    }
    CHECK(bad_round_trip == 0);
    CHECK(bad_midpoint == 0);
}

TEST_CASE("bf16 conversions: hand-checked values" * doctest::timeout(60)) {
    CHECK(fp32_to_bf16(1.f) == 0x3F80);
    CHECK(bf16_to_fp32(0x4049) == 3.140625f);
    CHECK(bf16_to_fp32(0xC000) == -2.f);
    // Ties to even on the dropped 16 bits.
    CHECK(fp32_to_bf16(std::bit_cast<float>(0x3F808000u)) == 0x3F80);
    CHECK(fp32_to_bf16(std::bit_cast<float>(0x3F818000u)) == 0x3F82);
    CHECK(fp32_to_bf16(std::bit_cast<float>(0x3F808001u)) == 0x3F81);
    CHECK(fp32_to_bf16(std::bit_cast<float>(0x3F807FFFu)) == 0x3F80);
    // Subnormals are kept (not flushed) and round the same way.
    CHECK(fp32_to_bf16(std::bit_cast<float>(0x00018000u)) == 0x0002);
    CHECK(fp32_to_bf16(std::bit_cast<float>(0x00008000u)) == 0x0000);
    // Inf, the float maximum (rounds up to inf, as ggml), NaN (stays NaN, made quiet).
    CHECK(fp32_to_bf16(std::numeric_limits<float>::infinity()) == 0x7F80);
    CHECK(fp32_to_bf16(-std::numeric_limits<float>::infinity()) == 0xFF80);
    CHECK(fp32_to_bf16(std::numeric_limits<float>::max()) == 0x7F80);
    const uint16_t snan = fp32_to_bf16(std::bit_cast<float>(0x7F800001u));
    CHECK(std::isnan(bf16_to_fp32(snan)));
    CHECK((snan & 0x0040) != 0);
    CHECK(std::isnan(bf16_to_fp32(fp32_to_bf16(std::numeric_limits<float>::quiet_NaN()))));
}

TEST_CASE("F16/BF16 activations: special values convert as dtype.hpp on every path" * doctest::timeout(60)) {
    constexpr float inf = std::numeric_limits<float>::infinity();
    // 16 values so the SIMD loops (8 or 16 wide) see them all.
    const std::vector<float> x = {0.f, -0.f, 65504.f, 65520.f, std::ldexp(1.f, -25), std::ldexp(3.f, -25),
                                  1.f + std::ldexp(1.f, -11), inf, -inf, std::numeric_limits<float>::quiet_NaN(),
                                  std::numeric_limits<float>::max(), std::numeric_limits<float>::denorm_min(),
                                  std::bit_cast<float>(0x3F808000u), std::bit_cast<float>(0x3F818000u),
                                  std::bit_cast<float>(0x7F800001u), -1e-30f};
    for (bool scalar : paths()) {
        const ops::detail::force_scalar_scope scope(scalar);
        for (dtype t : {dtype::f16, dtype::bf16}) {
            INFO("type=" << dtype_name(t) << " scalar=" << scalar);
            const auto act = quantize_act(t, x.data(), int64_t(x.size()));
            for (size_t i = 0; i < x.size(); ++i) {
                INFO("i=" << i);
                uint16_t h;
                std::memcpy(&h, act.data() + 2 * i, 2);
                const float back = t == dtype::f16 ? fp16_to_fp32(h) : bf16_to_fp32(h);
                if (std::isnan(x[i])) {
                    CHECK(std::isnan(back)); // NaN payloads may differ between F16C and dtype.hpp
                } else {
                    CHECK(h == (t == dtype::f16 ? fp32_to_fp16(x[i]) : fp32_to_bf16(x[i])));
                }
            }
        }
    }
}

// Runs body(t, n, seed) on both kernel paths (scalar forced, then run-time dispatch) for every
// type, row length and seed, with those values in the failure messages.
template <class Body>
void for_each_type_size_seed(Body && body) {
    for (bool scalar : paths()) {
        const ops::detail::force_scalar_scope scope(scalar);
        for (dtype t : k_types)
            for (int64_t n : sizes_for(t))
                for (uint32_t seed : k_seeds) {
                    INFO("type=" << dtype_name(t) << " n=" << n << " seed=" << seed << " scalar=" << scalar);
                    body(t, n, seed);
                }
    }
}

TEST_CASE("dequantize_row matches the reference" * doctest::timeout(60)) {
    for_each_type_size_seed([](dtype t, int64_t n, uint32_t seed) {
        const int64_t rows = 3;
        const auto w = random_weights(t, rows, n, seed);
        for (int64_t r = 0; r < rows; ++r) {
            const uint8_t * row = w.data() + r * row_bytes(t, n);
            const auto want = ref::dequantize(t, row, n);
            std::vector<float> got(static_cast<size_t>(n));
            ops::dequantize_row(t, row, got.data(), n);
            // Same float operations, so exact in practice; 1e-6 of the row's scale
            // leaves room for a compiler that contracts d1*q - m1 into an FMA.
            double max_abs = 0, max_err = 0;
            for (size_t i = 0; i < got.size(); ++i) {
                max_abs = std::max(max_abs, double(std::fabs(want[i])));
                max_err = std::max(max_err, double(std::fabs(got[i] - want[i])));
            }
            CHECK(max_err <= 1e-6 * max_abs);
        }
    });
}

TEST_CASE("quantize_activation matches the reference bit for bit" * doctest::timeout(60)) {
    for_each_type_size_seed([](dtype t, int64_t n, uint32_t seed) {
        auto x = test::random_floats(size_t(n), seed, -3.f, 3.f);
        if (n >= 64) std::fill(x.begin(), x.begin() + 32, 0.f); // an all-zero Q8_0 block
        const auto act = quantize_act(t, x.data(), n);
        switch (t) {
        case dtype::f32: CHECK(std::memcmp(act.data(), x.data(), act.size()) == 0); break;
        case dtype::f16:
        case dtype::bf16: {
            int bad = 0;
            for (int64_t i = 0; i < n; ++i) {
                uint16_t h;
                std::memcpy(&h, act.data() + 2 * i, 2);
                bad += h != (t == dtype::f16 ? fp32_to_fp16(x[size_t(i)]) : fp32_to_bf16(x[size_t(i)]));
            }
            CHECK(bad == 0);
            break;
        }
        case dtype::q8_0:
        case dtype::q4_0:
        case dtype::q5_0:
        case dtype::iq4_nl:
            CHECK(q8_mismatches(reinterpret_cast<const block_q8_0 *>(act.data()),
                                ref::quantize_q8_0(x.data(), n), n) == 0);
            break;
        case dtype::q4_1:
        case dtype::q5_1:
            CHECK(q8_mismatches(reinterpret_cast<const ops::block_q8_1 *>(act.data()),
                                ref::quantize_q8_1(x.data(), n), n) == 0);
            break;
        default: {
            const auto want = ref::quantize_q8_k(x.data(), n);
            const auto * b = reinterpret_cast<const ops::block_q8_k *>(act.data());
            int bad = 0;
            for (int64_t ib = 0; ib < n / k_qk_k; ++ib) {
                bad += b[ib].d != want.d[size_t(ib)];
                bad += std::memcmp(b[ib].qs, want.qs.data() + ib * k_qk_k, k_qk_k) != 0;
                for (int g = 0; g < 16; ++g) bad += b[ib].bsums[g] != want.bsums[size_t(ib * 16 + g)];
            }
            CHECK(bad == 0);
            break;
        }
        }
    });
}

TEST_CASE("activation quantization: ties round to even, signed extreme sets the Q8_K scale" * doctest::timeout(60)) {
    for (bool scalar : paths()) {
        const ops::detail::force_scalar_scope scope(scalar);
        INFO("scalar=" << scalar);
        // amax = 127 makes the multiplier exactly 1, so 2.5 and -3.5 are exact ties.
        std::vector<float> x(k_qk_k, 0.f);
        x[0] = 127.f, x[1] = 2.5f, x[2] = -3.5f, x[3] = 0.5f;
        const auto a0 = quantize_act(dtype::q8_0, x.data(), k_qk);
        const auto & b0 = *reinterpret_cast<const block_q8_0 *>(a0.data());
        CHECK(fp16_to_fp32(b0.d) == fp16_to_fp32(fp32_to_fp16(1.f)));
        CHECK(b0.qs[0] == 127);
        CHECK(b0.qs[1] == 2);
        CHECK(b0.qs[2] == -4);
        CHECK(b0.qs[3] == 0);
        // Q8_1: the same d and quants, and s = d * (127 + 2 - 4 + 0) with d = 1.
        const auto a1 = quantize_act(dtype::q5_1, x.data(), k_qk);
        const auto & b1 = *reinterpret_cast<const ops::block_q8_1 *>(a1.data());
        CHECK(b1.d == b0.d);
        CHECK(std::memcmp(b1.qs, b0.qs, k_qk) == 0);
        CHECK(fp16_to_fp32(b1.s) == 125.f);

        // Q8_K: -127 comes first, so the scale is -127/-127 = +1 and d = 1; the later +127 does not win.
        x[0] = -127.f, x[4] = 127.f;
        const auto ak = quantize_act(dtype::q4_k, x.data(), k_qk_k);
        const auto & bk = *reinterpret_cast<const ops::block_q8_k *>(ak.data());
        CHECK(bk.d == 1.f);
        CHECK(bk.qs[0] == -127);
        CHECK(bk.qs[1] == 2);
        CHECK(bk.qs[2] == -4);
        CHECK(bk.qs[4] == 127);
        CHECK(bk.bsums[0] == -127 + 2 - 4 + 127);
        // Swapped: +127 first gives scale -1 and d = -1.
        x[0] = 127.f, x[4] = -127.f;
        const auto ak2 = quantize_act(dtype::q4_k, x.data(), k_qk_k);
        const auto & bk2 = *reinterpret_cast<const ops::block_q8_k *>(ak2.data());
        CHECK(bk2.d == -1.f);
        CHECK(bk2.qs[0] == -127);
        CHECK(bk2.qs[1] == -2);
        CHECK(bk2.qs[2] == 4);
        CHECK(bk2.qs[4] == 127);
        // All zeros: d = 0 and zero quants.
        std::vector<float> zeros(k_qk_k, 0.f);
        const auto az = quantize_act(dtype::q6_k, zeros.data(), k_qk_k);
        const auto & bz = *reinterpret_cast<const ops::block_q8_k *>(az.data());
        CHECK(bz.d == 0.f);
        CHECK(std::all_of(std::begin(bz.qs), std::end(bz.qs), [](int8_t q) { return q == 0; }));
    }
}

TEST_CASE("dot_row against the reference and the exact float dot" * doctest::timeout(60)) {
    for_each_type_size_seed([](dtype t, int64_t n, uint32_t seed) {
        const int64_t rows = 3;
        const auto w = random_weights(t, rows, n, seed);
        const auto x = test::random_floats(size_t(n), seed + 100);
        const auto act = quantize_act(t, x.data(), n);
        for (int64_t r = 0; r < rows; ++r) {
            const uint8_t * row = w.data() + r * row_bytes(t, n);
            const double got = ops::dot_row(t, row, act.data(), n);
            // Same quantized inputs: only float rounding separates the two.
            const ref::dot_result want = ref::dot(t, row, x.data(), n);
            CHECK(std::fabs(got - want.value) <= k_tight_rtol * want.abs_sum + 1e-30);
            // Against the unquantized activation: off by at most sum |w_i| * |a_i - x_i|,
            // bounded per element by activation_error_bound.
            const auto wf = ref::dequantize(t, row, n);
            double exact = 0, bound = k_tight_rtol * want.abs_sum + 1e-30;
            for (int64_t i = 0; i < n; ++i) {
                exact += double(wf[size_t(i)]) * x[size_t(i)];
                bound += weight_magnitude(t, row, wf, i) * activation_error_bound(t, x.data(), n, i);
            }
            CHECK(std::fabs(got - exact) <= bound);
        }
    });
}

namespace {
// Weights of type t [rows, n] with m_max activation rows x [m_max, n], and want[i · rows + r]:
// the single-row API's dot of weight row r and activation row i, which matmul_rows must give bit
// for bit.
struct rows_case {
    rows_case(dtype type, int64_t n_rows, int64_t row_len, int64_t m_max, uint32_t seed)
        : t(type), rows(n_rows), n(row_len), w(random_weights(t, rows, n, seed)),
          x(test::random_floats(size_t(m_max * n), seed + 1)), want(size_t(m_max * rows)) {
        for (int64_t i = 0; i < m_max; ++i) {
            const auto act = quantize_act(t, x.data() + i * n, n);
            for (int64_t r = 0; r < rows; ++r) want[size_t(i * rows + r)] = ops::dot_row(t, view().row(r), act.data(), n);
        }
    }
    raw_view view() const { return {t, reinterpret_cast<const std::byte *>(w.data()), shape{rows, n}}; }
    dtype t;
    int64_t rows, n;
    std::vector<uint8_t> w;
    std::vector<float> x, want;
};
} // namespace

TEST_CASE("matvec and matmul_rows equal per-row dot_row for 1, 2 and all threads" * doctest::timeout(60)) {
    for (bool scalar : paths()) {
        const ops::detail::force_scalar_scope scope(scalar);
        for (dtype t : k_types) {
            const auto ns = sizes_for(t);
            for (int64_t n : {ns[1], ns.back()}) {
                for (int64_t rows : k_row_counts) {
                    constexpr int64_t k_max_m = 9;
                    const rows_case c(t, rows, n, k_max_m, uint32_t(n * 131 + rows));
                    const raw_view view = c.view();
                    const auto & x = c.x;
                    const auto & want = c.want;
                    for (int threads : {1, 2, 0}) {
                        INFO("type=" << dtype_name(t) << " n=" << n << " rows=" << rows << " threads=" << threads
                                      << " scalar=" << scalar);
                        std::vector<std::byte> scratch;
                        std::vector<float> y(size_t(rows), -1.f);
                        ops::matvec(view, x.data(), y.data(), scratch, threads);
                        // Each row is one dot_row call on the same activation: identical bits.
                        CHECK(std::equal(y.begin(), y.end(), want.begin()));
                        const std::byte * warm = scratch.data();
                        ops::matvec(view, x.data(), y.data(), scratch, threads);
                        CHECK(scratch.data() == warm); // no reallocation once warm
                        for (int64_t m : {int64_t(1), int64_t(2), int64_t(4), k_max_m}) {
                            INFO("m=" << m);
                            std::vector<float> ym(size_t(m * rows), -1.f);
                            ops::matmul_rows(view, x.data(), m, ym.data(), scratch, threads);
                            CHECK(std::equal(ym.begin(), ym.end(), want.begin()));
                        }
                    }
                }
            }
        }
    }
}

TEST_CASE("a few activation rows meet weights of over a MiB in runs of rows, bit for bit as dot_row" *
          doctest::timeout(120)) {
    // Where a kernel set has a row loop and no batched dot (AVX-512), m activation rows go through
    // the loop once each over runs of a few hundred KiB of weight rows: these weights (1.1-1.5
    // MiB, 4096 wide) take several runs per thread, each split somewhere inside a run.
    constexpr int64_t n = 4096;
    for (dtype t : {dtype::q8_0, dtype::q4_0, dtype::q5_0, dtype::q4_k, dtype::q6_k}) {
        const int64_t rows = (int64_t(1) << 20) / row_bytes(t, n) + 37;
        constexpr int64_t k_max_m = 5;
        const rows_case c(t, rows, n, k_max_m, uint32_t(rows));
        const raw_view view = c.view();
        const auto & x = c.x;
        const auto & want = c.want;
        for (int threads : {1, 2})
            for (int64_t m : {int64_t(2), int64_t(3), k_max_m}) {
                INFO("type=" << dtype_name(t) << " rows=" << rows << " threads=" << threads << " m=" << m);
                std::vector<std::byte> scratch;
                std::vector<float> y(size_t(m * rows), -1.f);
                ops::matmul_rows(view, x.data(), m, y.data(), scratch, threads);
                CHECK(std::equal(y.begin(), y.end(), want.begin()));
            }
    }
}

TEST_CASE("decode runs the AVX2 row loop for the 32-element block types" * doctest::timeout(60)) {
    // The row loop is bit-identical to dot per row, so only this can tell that it is in use.
    ops::detail::force_scalar(false);
    if (!ops::detail::avx2_active()) FRUGAL_SKIP("CPU without AVX2+FMA+F16C: only the scalar path exists");
    for (dtype t : {dtype::q8_0, dtype::q4_0, dtype::q4_1, dtype::q5_0, dtype::q5_1, dtype::iq4_nl}) {
        INFO("type=" << dtype_name(t));
        CHECK(ops::detail::decode_row_loop(t));
    }
    const ops::detail::force_scalar_scope scope(true);
    CHECK_FALSE(ops::detail::decode_row_loop(dtype::q8_0));
}

TEST_CASE("matmul_rows_many equals one matmul_rows per weight, across activation formats" * doctest::timeout(60)) {
    // Q8_0 and Q4_0 share Q8_0 activations (one conversion), Q4_K takes Q8_K ones, F16 its own;
    // the second Q8_0 weight has longer rows (a conversion of the same input at another length,
    // as a MoE layer's shared expert beside the routed ones); row counts make the thread split
    // cross product boundaries.
    const int64_t n = 512;
    const dtype types[] = {dtype::q8_0, dtype::q4_0, dtype::q4_k, dtype::f16, dtype::q8_0};
    const int64_t rows[] = {37, 5, 64, 3, 21};
    const int64_t row_len[] = {n, n, n, n, 2 * n};
    constexpr size_t k = std::size(types);
    for (bool scalar : paths()) {
        const ops::detail::force_scalar_scope scope(scalar);
        const random_weight_set w(types, rows, row_len, 1);
        const auto & views = w.views;
        const auto x = test::random_floats(size_t(5 * 2 * n), 99); // rows of n or 2n elements
        for (int64_t m : {1, 2, 5})
            for (int threads : {1, 2}) {
                INFO("m=" << m << " threads=" << threads << " scalar=" << scalar);
                std::vector<std::byte> scratch;
                std::vector<std::vector<float>> want, got;
                std::vector<ops::row_product> products;
                for (size_t i = 0; i < k; ++i) {
                    const int64_t ldy = rows[i] + 2; // a wider output: the last 2 columns stay untouched
                    want.emplace_back(size_t(m * ldy), -1.f);
                    got.emplace_back(size_t(m * ldy), -1.f);
                    ops::matmul_rows(views[i], x.data(), m, want.back().data(), scratch, threads, ldy);
                }
                for (size_t i = 0; i < k; ++i) products.push_back({views[i], got[i].data(), rows[i] + 2});
                ops::matmul_rows_many(products, x.data(), m, scratch, threads);
                for (size_t i = 0; i < k; ++i) CHECK(got[i] == want[i]);
            }
    }
}

TEST_CASE("matmul_rows_many takes each product's own input, bit for bit as matmul_rows" * doctest::timeout(60)) {
    // A decode step's per-head blocks: products of one row length, most with inputs of their own,
    // one repeating another's input and one taking the call's; Q8_0 and Q4_0 share a conversion
    // format (one group), Q6_K a second one, and rows make the thread split cross products.
    const int64_t n = 256;
    const dtype types[] = {dtype::q8_0, dtype::q4_0, dtype::q8_0, dtype::q6_k, dtype::q6_k};
    const int64_t rows[] = {40, 7, 24, 9, 33};
    constexpr size_t k = std::size(types);
    for (bool scalar : paths()) {
        const ops::detail::force_scalar_scope scope(scalar);
        const int64_t row_len[] = {n, n, n, n, n};
        const random_weight_set w(types, rows, row_len, 11);
        const auto & views = w.views;
        for (int64_t m : {1, 3})
            for (int threads : {1, 2}) {
                INFO("m=" << m << " threads=" << threads << " scalar=" << scalar);
                const auto call_x = test::random_floats(size_t(m * n), 7);
                std::vector<std::vector<float>> inputs;
                for (size_t i = 0; i < k; ++i) inputs.push_back(test::random_floats(size_t(m * n), uint32_t(30 + i)));
                // product i's input: its own, except 2 (product 0's) and 4 (the call's)
                const float * x_of[k] = {inputs[0].data(), inputs[1].data(), inputs[0].data(), inputs[3].data(), nullptr};
                std::vector<std::byte> scratch;
                std::vector<std::vector<float>> want, got;
                std::vector<ops::row_product> products;
                for (size_t i = 0; i < k; ++i) {
                    want.emplace_back(size_t(m * rows[i]), -1.f);
                    got.emplace_back(size_t(m * rows[i]), -1.f);
                    ops::matmul_rows(views[i], x_of[i] ? x_of[i] : call_x.data(), m, want.back().data(), scratch, threads);
                    products.push_back({views[i], got.back().data(), 0, x_of[i]});
                }
                ops::matmul_rows_many(products, call_x.data(), m, scratch, threads);
                for (size_t i = 0; i < k; ++i) CHECK(got[i] == want[i]);
            }
    }
    // Every product needs an input, and a call takes at most k_max_row_products of them.
    const auto w = random_weights(dtype::q8_0, 2, 64, 1);
    const raw_view view{dtype::q8_0, reinterpret_cast<const std::byte *>(w.data()), shape{2, 64}};
    std::vector<float> x(64), y(2 * (ops::k_max_row_products + 1));
    std::vector<std::byte> scratch;
    const ops::row_product orphan[] = {{view, y.data()}};
    CHECK_THROWS_WITH_AS(ops::matmul_rows_many(orphan, nullptr, 1, scratch, 1), doctest::Contains("has no input"),
                         frugal::error);
    std::vector<ops::row_product> many;
    for (size_t i = 0; i <= ops::k_max_row_products; ++i) many.push_back({view, y.data() + 2 * i, 0, x.data()});
    const std::string limit = "at most " + std::to_string(ops::k_max_row_products);
    CHECK_THROWS_WITH_AS(ops::matmul_rows_many(many, nullptr, 1, scratch, 1), doctest::Contains(limit.c_str()),
                         frugal::error);
    many.pop_back();
    CHECK_NOTHROW(ops::matmul_rows_many(many, nullptr, 1, scratch, 1));
}

TEST_CASE("scalar and AVX2 paths agree" * doctest::timeout(60)) {
    ops::detail::force_scalar(false);
    if (!ops::detail::avx2_active()) FRUGAL_SKIP("CPU without AVX2+FMA+F16C: only the scalar path exists");
    for (dtype t : k_types) {
        for (int64_t n : sizes_for(t)) {
            for (uint32_t seed : k_seeds) {
                INFO("type=" << dtype_name(t) << " n=" << n << " seed=" << seed);
                const int64_t rows = 3;
                const auto w = random_weights(t, rows, n, seed);
                const auto x = test::random_floats(size_t(n), seed + 200, -2.f, 2.f);
                std::vector<std::byte> act[2];
                std::vector<float> deq[2], dots[2];
                for (int s = 0; s < 2; ++s) {
                    const ops::detail::force_scalar_scope scope(s == 1);
                    act[s] = quantize_act(t, x.data(), n);
                    deq[s].resize(size_t(rows * n));
                    for (int64_t r = 0; r < rows; ++r) {
                        const uint8_t * row = w.data() + r * row_bytes(t, n);
                        ops::dequantize_row(t, row, deq[s].data() + r * n, n);
                        dots[s].push_back(ops::dot_row(t, row, act[s].data(), n));
                    }
                }
                CHECK(act[0] == act[1]); // identical arithmetic, identical bytes
                CHECK(deq[0] == deq[1]);
                for (int64_t r = 0; r < rows; ++r) {
                    const double scale = ref::dot(t, w.data() + r * row_bytes(t, n), x.data(), n).abs_sum;
                    CHECK(std::fabs(dots[0][size_t(r)] - dots[1][size_t(r)]) <= k_tight_rtol * scale + 1e-30);
                }
            }
        }
    }
}

TEST_CASE("repacked Q4_0, Q5_0, IQ4_NL, Q4_1 and Q5_1 hold the values and products of the rows they came from" *
          doctest::timeout(120)) {
    // Block counts 1..9 cover a lone block, odd counts (a half pair) and partial groups of eight
    // (scales, and Q5_0's fifth bits kept as qh words after the last full group); 44, 48, 280 and
    // 342 are real rows (K 1408 and 10944 of DeepSeek-V2-Lite, 1536 and 8960 of the 1.5B Qwen2);
    // 721 (K 23072) is longer than any of those (the row loops kept rows of up to 20480 on the stack).
    const int64_t block_counts[] = {1, 2, 3, 7, 8, 9, 15, 44, 48, 280, 342, 721};
    for (dtype original : {dtype::q4_0, dtype::q5_0, dtype::iq4_nl, dtype::q4_1, dtype::q5_1}) {
        const dtype t = ops::repacked_type(original);
        for (bool scalar : paths()) {
            const ops::detail::force_scalar_scope scope(scalar);
            for (int64_t nb : block_counts) {
                const int64_t n = nb * k_qk, rows = 5;
                const auto w = random_weights(original, rows, n, uint32_t(nb));
                std::vector<uint8_t> packed(w.size());
                ops::repack_rows(original, w.data(), packed.data(), rows, n);
                const raw_view view{t, reinterpret_cast<const std::byte *>(packed.data()), shape{rows, n}};
                CHECK(view.n_bytes() == int64_t(w.size())); // same size: a repacked copy costs what the original did
                constexpr int64_t k_max_m = 9;
                const auto x = test::random_floats(size_t(k_max_m * n), uint32_t(nb) + 5);
                std::vector<float> want(size_t(k_max_m * rows));
                for (int64_t r = 0; r < rows; ++r) {
                    INFO(dtype_name(t) << " blocks=" << nb << " row=" << r << " scalar=" << scalar);
                    const uint8_t * orig = w.data() + r * row_bytes(original, n);
                    std::vector<float> a(static_cast<size_t>(n)), b(static_cast<size_t>(n));
                    ops::dequantize_row(original, orig, a.data(), n);
                    ops::dequantize_row(t, view.row(r), b.data(), n);
                    CHECK(a == b);
                    for (int64_t i = 0; i < k_max_m; ++i) {
                        const auto act = quantize_act(t, x.data() + i * n, n);
                        CHECK(act == quantize_act(original, x.data() + i * n, n));
                        const float got = ops::dot_row(t, view.row(r), act.data(), n);
                        const ref::dot_result ref_dot = ref::dot(original, orig, x.data() + i * n, n);
                        CHECK(std::fabs(got - ref_dot.value) <= k_tight_rtol * ref_dot.abs_sum + 1e-30);
                        if (scalar) CHECK(got == ops::dot_row(original, orig, act.data(), n)); // same order, same bits
                        want[size_t(i * rows + r)] = got;
                    }
                }
                // The row loop (m = 1) and the batched dots give dot_row's bits.
                for (int threads : {1, 2})
                    for (int64_t m : {int64_t(1), int64_t(2), int64_t(5), k_max_m}) {
                        INFO(dtype_name(t) << " blocks=" << nb << " threads=" << threads << " m=" << m
                                           << " scalar=" << scalar);
                        std::vector<std::byte> scratch;
                        std::vector<float> y(size_t(m * rows), -1.f);
                        ops::matmul_rows(view, x.data(), m, y.data(), scratch, threads);
                        CHECK(std::equal(y.begin(), y.end(), want.begin()));
                    }
            }
        }
        // Where this CPU repacks the type, a SIMD row loop decodes the repacked layout.
        if (ops::repacking_speeds_decode(original)) CHECK(ops::detail::decode_row_loop(t));
        CHECK_FALSE(dtype_from_ggml(uint32_t(t))); // never read from a file
    }
    CHECK(ops::repacked_type(dtype::q4_0) == dtype::q4_0_repacked);
    CHECK(ops::repacked_type(dtype::q5_0) == dtype::q5_0_repacked);
    CHECK(ops::repacked_type(dtype::iq4_nl) == dtype::iq4_nl_repacked);
    CHECK(ops::repacked_type(dtype::q4_1) == dtype::q4_1_repacked);
    CHECK(ops::repacked_type(dtype::q5_1) == dtype::q5_1_repacked);
    CHECK(ops::repacked_type(dtype::q8_0) == dtype::q8_0);
    std::vector<std::byte> buf(64);
    check_invalid([&] { ops::repack_rows(dtype::q8_0, buf.data(), buf.data(), 1, 32); }, "q8_0 has no repacked layout");
}

TEST_CASE("a repacked Q5_0 row puts each fifth bit where dtype.hpp says" * doctest::timeout(60)) {
    // One set fifth bit at a time (element e of block b) in a row of 13 blocks: one full group of
    // 8, then 5 tail blocks. Its place follows the layout's description, written out here apart
    // from the library's own reader: row = d[nb] | fifth bits | qs[nb][16]; in the group, bit
    // 2p + (e >= 16) of byte 16 · (b % 2) + e % 16, p = b / 2; in the tail, bit e of block b's
    // little-endian word at 4 · b.
    constexpr int64_t nb = 13, n = nb * k_qk;
    const int64_t fifth_offset = 2 * nb, fifth_bytes = 4 * nb;
    for (int64_t b : {int64_t(0), int64_t(1), int64_t(6), int64_t(7), int64_t(8), int64_t(12)})
        for (int e : {0, 5, 15, 16, 21, 31}) {
            INFO("block " << b << " element " << e);
            std::vector<block_q5_0> row(nb);
            for (int64_t i = 0; i < nb; ++i) {
                row[size_t(i)].d = uint16_t(0x3C00 + i); // distinct scales, so misplaced ones show
                for (int j = 0; j < k_qk / 2; ++j) row[size_t(i)].qs[j] = uint8_t(i * 16 + j);
            }
            const uint32_t qh = 1u << e;
            std::memcpy(row[size_t(b)].qh, &qh, sizeof qh);
            std::vector<uint8_t> packed(sizeof(block_q5_0) * nb);
            ops::repack_rows(dtype::q5_0, row.data(), packed.data(), 1, n);
            int64_t byte = 4 * b;
            int bit = e;
            if (b < 8) {
                byte = 16 * (b % 2) + e % 16;
                bit = 2 * int(b / 2) + (e >= 16 ? 1 : 0);
            } else {
                byte += bit / 8;
                bit %= 8;
            }
            for (int64_t i = 0; i < fifth_bytes; ++i)
                CHECK(packed[size_t(fifth_offset + i)] == (i == byte ? 1u << bit : 0u));
            for (int64_t i = 0; i < nb; ++i) {
                uint16_t d;
                std::memcpy(&d, packed.data() + 2 * i, sizeof d);
                CHECK(d == row[size_t(i)].d);
                CHECK(std::memcmp(packed.data() + fifth_offset + fifth_bytes + 16 * i, row[size_t(i)].qs, 16) == 0);
            }
        }
}

TEST_CASE("quantize_row_weights follows ggml's reference quantizers" * doctest::timeout(60)) {
    for (dtype t : {dtype::q8_0, dtype::q4_0}) {
        for (int64_t n : sizes_for(t)) {
            for (uint32_t seed : k_seeds) {
                INFO("type=" << dtype_name(t) << " n=" << n << " seed=" << seed);
                const auto x = test::random_floats(size_t(n), seed, -2.f, 2.f);
                std::vector<uint8_t> got(size_t(row_bytes(t, n)));
                ops::quantize_row_weights(t, x.data(), got.data(), n);
                const auto want = t == dtype::q8_0 ? ref::quantize_q8_0_weights(x.data(), n)
                                                   : ref::quantize_q4_0_weights(x.data(), n);
                CHECK(got == want);
                // Round trip: within half a step for Q8_0 (plus the fp16 rounding of d: 127 * 2^-11
                // steps), within one step for Q4_0 (its top code 8 is clamped to 7).
                const auto y = ref::dequantize(t, got.data(), n);
                const double steps = t == dtype::q8_0 ? 0.5 + 127.0 / 2048 : 1.0 + 8.0 / 2048;
                int bad = 0;
                for (int64_t i = 0; i < n; ++i) {
                    const size_t off = size_t(i / k_qk * traits(t).block_bytes);
                    const double d = std::fabs(fp16_to_fp32(uint16_t(got[off] | got[off + 1] << 8)));
                    bad += std::fabs(y[size_t(i)] - x[size_t(i)]) > steps * d * (1 + 1e-6);
                }
                CHECK(bad == 0);
            }
        }
    }
    // Plain types round like the activations.
    const auto x = test::random_floats(100, 5);
    std::vector<uint16_t> h(100);
    ops::quantize_row_weights(dtype::bf16, x.data(), h.data(), 100);
    for (size_t i = 0; i < h.size(); ++i) CHECK(h[i] == fp32_to_bf16(x[i]));
}

namespace {

// llama.cpp's own CPU kernels, from the peer that ../shared/tools/setup-peer.sh installs: the
// ggml_type_traits_cpu table of its AVX2 ("haswell") variant (layout from ggml-cpu.h).
struct ggml_cpu_traits {
    void (*from_float)(const float * x, void * y, int64_t n);
    void (*vec_dot)(int n, float * s, size_t bs, const void * x, size_t bx, const void * y, size_t by, int nrc);
    int vec_dot_type; // enum ggml_type
    int64_t nrows;
};
using ggml_traits_fn = const ggml_cpu_traits * (*)(int type);

ggml_traits_fn load_ggml_haswell(std::string & why) {
    const auto bins = frugal::test::peer_dir() / "node_modules/@node-llama-cpp/linux-x64/bins/linux-x64";
    void * base = dlopen((bins / "libggml-base.so").c_str(), RTLD_NOW | RTLD_GLOBAL);
    void * cpu = base ? dlopen((bins / "libggml-cpu-haswell.so").c_str(), RTLD_NOW) : nullptr;
    auto init = cpu ? reinterpret_cast<void (*)()>(dlsym(cpu, "ggml_cpu_init")) : nullptr;
    auto traits_fn = cpu ? reinterpret_cast<ggml_traits_fn>(dlsym(cpu, "ggml_get_type_traits_cpu")) : nullptr;
    if (!init || !traits_fn) {
        why = "llama.cpp peer not found under " + bins.string() + " (run ../shared/tools/setup-peer.sh)";
        return nullptr;
    }
    init();
    return traits_fn;
}

} // namespace

TEST_CASE("agrees with llama.cpp's ggml CPU kernels (peer library)" * doctest::timeout(60)) {
    ops::detail::force_scalar(false);
    if (!ops::detail::avx2_active()) FRUGAL_SKIP("no AVX2: ggml's haswell kernels cannot run here");
    std::string why;
    const ggml_traits_fn ggml = load_ggml_haswell(why);
    if (!ggml) FRUGAL_SKIP(why);
    for (dtype t : k_types) {
        const ggml_cpu_traits * tr = ggml(int(t));
        REQUIRE(bool(tr->vec_dot));
        for (int64_t n : sizes_for(t)) {
            for (uint32_t seed : k_seeds) {
                INFO("type=" << dtype_name(t) << " n=" << n << " seed=" << seed);
                const auto w = random_weights(t, 1, n, seed);
                const auto x = test::random_floats(size_t(n), seed + 300, -4.f, 4.f);
                const auto mine = quantize_act(t, x.data(), n);
                std::vector<std::byte> theirs(mine.size());
                if (t == dtype::f32) std::memcpy(theirs.data(), x.data(), theirs.size()); // F32 has no from_float
                else ggml(tr->vec_dot_type)->from_float(x.data(), theirs.data(), n);
                CHECK(mine == theirs); // same activation bytes
                float s = 0;
                tr->vec_dot(int(n), &s, 0, w.data(), 0, theirs.data(), 0, 1);
                const double scale = ref::dot(t, w.data(), x.data(), n).abs_sum;
                CHECK(std::fabs(double(ops::dot_row(t, w.data(), mine.data(), n)) - s) <= k_tight_rtol * scale + 1e-30);
            }
        }
    }
    // Weight quantizers against ggml_quantize_chunk (ggml's reference rounding).
    auto quantize_chunk = reinterpret_cast<size_t (*)(int, const float *, void *, int64_t, int64_t, int64_t,
                                                      const float *)>(dlsym(RTLD_DEFAULT, "ggml_quantize_chunk"));
    REQUIRE(bool(quantize_chunk));
    for (dtype t : {dtype::q8_0, dtype::q4_0, dtype::f16, dtype::bf16}) {
        for (uint32_t seed : k_seeds) {
            INFO("type=" << dtype_name(t) << " seed=" << seed);
            const auto x = test::random_floats(768, seed, -3.f, 3.f);
            std::vector<uint8_t> mine(size_t(row_bytes(t, 768))), theirs(mine.size());
            ops::quantize_row_weights(t, x.data(), mine.data(), 768);
            quantize_chunk(int(t), x.data(), theirs.data(), 0, 1, 768, nullptr);
            CHECK(mine == theirs);
        }
    }
}

TEST_CASE("invalid n or dtype throws invalid_argument naming the value" * doctest::timeout(60)) {
    std::vector<std::byte> buf(4096);
    std::vector<float> f(4096);
    check_invalid([&] { ops::dequantize_row(dtype::q4_k, buf.data(), f.data(), 100); }, "100");
    check_invalid([&] { (void)ops::activation_bytes(dtype::q8_0, 33); }, "33");
    check_invalid([&] { ops::quantize_activation(dtype::q6_k, f.data(), buf.data(), 255); }, "255");
    check_invalid([&] { (void)ops::dot_row(dtype::q5_k, buf.data(), buf.data(), 300); }, "300");
    check_invalid([&] { (void)ops::dot_row(dtype::q4_0, buf.data(), buf.data(), -32); }, "-32");
    check_invalid([&] { (void)ops::activation_bytes(dtype(18), 32); }, "ggml id 18"); // IQ3_XXS: not supported
    check_invalid([&] { ops::quantize_row_weights(dtype::q4_k, f.data(), buf.data(), 256); }, "q4_k");
    std::vector<std::byte> scratch;
    const raw_view bad_n{dtype::q4_0, buf.data(), shape{3, 48}};
    check_invalid([&] { ops::matvec(bad_n, f.data(), f.data(), scratch, 1); }, "48");
    const raw_view bad_type{dtype(16), buf.data(), shape{3, 256}}; // IQ2_XXS
    check_invalid([&] { ops::matmul_rows(bad_type, f.data(), 2, f.data(), scratch, 1); }, "ggml id 16");
}
