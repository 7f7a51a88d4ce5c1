// quant_avx512_test.cpp - the AVX-512 VNNI decode kernels (lib/ops/quant_avx512_kernels.hpp) must
// give the AVX2 kernels' results to the bit. Two builds of the same source are checked:
//   - the library's, on CPUs with AVX-512 F/BW/VNNI (skipped elsewhere);
//   - one compiled here against SIMD Everywhere's portable AVX-512 (Debian libsimde-dev), which
//     runs on any x86-64 CPU: the kernels' logic is tested even where no AVX-512 machine is.
#include <doctest/doctest.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

// SIMDe's AVX-512 under the Intel names, emulated with whatever this translation unit targets.
#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>
#include <simde/x86/f16c.h>

#include "common/test_support.hpp"
#include "ops/quant.hpp"
#include "ops/quant_kernels.hpp"

// SIMDe 0.7.4 lacks this one: lane by lane, rounding to nearest as the instruction does.
inline simde__m512 frugal_test_cvtepi32_ps(simde__m512i a) {
    const simde__m512i_private in = simde__m512i_to_private(a);
    simde__m512_private out;
    for (int i = 0; i < 16; ++i) out.f32[i] = float(in.i32[i]);
    return simde__m512_from_private(out);
}
#define _mm512_cvtepi32_ps frugal_test_cvtepi32_ps

#define FRUGAL_AVX512
#define FRUGAL_AVX512_NS frugal_test_simde
#include "ops/quant_avx512_kernels.hpp"

using namespace frugal;

namespace {

// rows x n Q8_0 weights and one Q8_0 activation row, from seeded random floats (through the
// library's quantizers, so the scales are ordinary fp16 values); every other row is made of
// extreme quants (-128, 127, 0) to reach the edges of the integer ranges.
struct q8_case {
    std::vector<std::byte> w, act;
    int64_t rows, n;
};

q8_case make_case(int64_t rows, int64_t n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal(0.f, 1.f);
    q8_case c;
    c.rows = rows;
    c.n = n;
    c.w.resize(size_t(rows * frugal::row_bytes(dtype::q8_0, n)));
    c.act.resize(ops::activation_bytes(dtype::q8_0, n));
    std::vector<float> x(static_cast<size_t>(n));
    for (int64_t r = 0; r < rows; ++r) {
        for (auto & v : x) v = normal(rng);
        auto * row = c.w.data() + r * frugal::row_bytes(dtype::q8_0, n);
        ops::quantize_row_weights(dtype::q8_0, x.data(), row, n);
        if (r % 2) {
            auto * blocks = reinterpret_cast<block_q8_0 *>(row);
            const int8_t extremes[] = {-128, 127, 0, -1};
            for (int64_t b = 0; b < n / k_qk; ++b)
                for (int i = 0; i < k_qk; ++i) blocks[b].qs[i] = extremes[(i + b + r) % 4];
        }
    }
    for (auto & v : x) v = normal(rng);
    x[0] = 0.f; // a zero element meets a nonzero weight
    ops::quantize_activation(dtype::q8_0, x.data(), c.act.data(), n);
    return c;
}

// The block counts of the AVX2 tests: odd halves, partial steps, long rows.
constexpr int64_t k_block_counts[] = {1, 2, 3, 8, 9, 48, 280, 721};

// Checks kernel table `k` (dot and dot_rows) against the AVX2 table, bit for bit.
void check_against_avx2(decltype(ops::detail::kernels::dot) dot, decltype(ops::detail::kernels::dot_rows) dot_rows) {
    const ops::detail::kernels * avx2 = ops::detail::avx2_kernels(dtype::q8_0);
    REQUIRE(avx2);
    REQUIRE(bool(avx2->dot_rows));
    for (int64_t nb : k_block_counts) {
        CAPTURE(nb);
        const int64_t rows = 5, n = nb * k_qk;
        const auto c = make_case(rows, n, uint32_t(nb));
        const size_t stride = size_t(frugal::row_bytes(dtype::q8_0, n));
        std::vector<float> want(static_cast<size_t>(rows)), got(static_cast<size_t>(rows));
        avx2->dot_rows(c.w.data(), stride, rows, c.act.data(), n, want.data());
        dot_rows(c.w.data(), stride, rows, c.act.data(), n, got.data());
        for (int64_t r = 0; r < rows; ++r) {
            CAPTURE(r);
            CHECK(std::memcmp(&got[size_t(r)], &want[size_t(r)], sizeof(float)) == 0);
            const float single = dot(c.w.data() + size_t(r) * stride, c.act.data(), n);
            CHECK(std::memcmp(&single, &want[size_t(r)], sizeof(float)) == 0);
            // and the AVX2 dot agrees with its own row loop (the reference these are held to)
            const float avx2_single = avx2->dot(c.w.data() + size_t(r) * stride, c.act.data(), n);
            CHECK(std::memcmp(&avx2_single, &want[size_t(r)], sizeof(float)) == 0);
        }
    }
}

} // namespace

TEST_CASE("AVX-512 Q8_0 kernels, emulated by SIMDe, equal the AVX2 ones to the bit" * doctest::timeout(60)) {
    if (!ops::detail::avx2_active()) FRUGAL_SKIP("no AVX2 on this CPU: nothing to compare the kernels with");
    check_against_avx2(frugal_test_simde::dot_q8_0, frugal_test_simde::dot_rows_q8_0);
}

TEST_CASE("AVX-512 Q8_0 kernels of the library equal the AVX2 ones to the bit" * doctest::timeout(60)) {
    if (!ops::detail::avx512_vnni_supported()) FRUGAL_SKIP("this CPU has no AVX-512 VNNI");
    const ops::detail::kernels * k = ops::detail::avx512_kernels(dtype::q8_0);
    REQUIRE(k);
    check_against_avx2(k->dot, k->dot_rows);
    // and decode selects them
    CHECK(ops::detail::decode_row_loop(dtype::q8_0));
}
