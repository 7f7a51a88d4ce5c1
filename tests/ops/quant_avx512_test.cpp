// quant_avx512_test.cpp - the AVX-512 VNNI decode kernels (lib/ops/quant_avx512_kernels.hpp: Q8_0,
// Q4_0, Q5_0, IQ4_NL, Q4_1 and Q5_1 (as stored and repacked), the K-quants and IQ4_XS) must give
// the AVX2 kernels' results to the bit (the repacked Q4_1 and Q5_1, which have no AVX2 loop: the
// exact sum's within rounding). Two builds of the same source are checked:
//   - the library's, on CPUs with AVX-512 F/BW/VNNI (skipped elsewhere);
//   - one compiled here against SIMD Everywhere's portable AVX-512 (Debian libsimde-dev), which
//     runs on any x86-64 CPU: the kernels' logic is tested even where no AVX-512 machine is.
#include <doctest/doctest.h>

#include <cstring>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "ops/simde_avx512.hpp"

#include "common/test_support.hpp"
#include "ops/quant.hpp"
#include "ops/quant_kernels.hpp"

#define FRUGAL_AVX512
#define FRUGAL_AVX512_NS frugal_test_simde
#include "ops/quant_avx512_kernels.hpp"

using namespace frugal;

namespace {

// rows x n weights of type t (a 32-element block type) and one activation row of its type (Q8_0,
// Q8_1), from seeded random floats through the library's quantizers (ordinary fp16 scales; Q5_1's
// offsets of either sign); every other row gets extreme quants (Q8_0: -128, 127, 0, -1; Q4_0: 0
// and 15, i.e. -8 and 7; Q5_0 and Q5_1: 0 and 31) to reach the edges of the integer ranges.
struct weights_case {
    std::vector<std::byte> w, act;
};

weights_case make_case(dtype t, int64_t rows, int64_t n, uint32_t seed) {
    if (const dtype stored_type = ops::stored_type(t); stored_type != t) { // the stored type's case, repacked by the library
        weights_case c = make_case(stored_type, rows, n, seed);
        const std::vector<std::byte> stored = c.w;
        ops::repack_rows(stored_type, stored.data(), c.w.data(), rows, n);
        return c;
    }
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal(0.f, 1.f);
    const int64_t row_bytes = frugal::row_bytes(t, n);
    weights_case c;
    c.w.resize(static_cast<size_t>(rows * row_bytes));
    std::vector<float> x(static_cast<size_t>(n));
    std::uniform_int_distribution<int> byte(0, 255);
    for (int64_t r = 0; r < rows; ++r) {
        for (auto & v : x) v = normal(rng);
        std::byte * row = c.w.data() + r * row_bytes;
        if (t == dtype::q4_1 || t == dtype::q5_0 || t == dtype::q5_1 || t == dtype::iq4_nl) {
            // no quantizer for these: random quants, ordinary scales (offsets m of either sign),
            // and every other row all 0 or all 15 / 31 (IQ4_NL: levels -127 and 113) by block (the
            // ends of the range)
            const auto fill = [&]<class Block>(Block * blocks) {
                for (int64_t b = 0; b < n / k_qk; ++b) {
                    Block & blk = blocks[b];
                    blk.d = fp32_to_fp16(0.01f * (1.f + std::abs(normal(rng))));
                    const bool extreme = r % 2 == 1, high = (b + r) % 2 == 0;
                    for (auto & q : blk.qs) q = extreme ? (high ? 0xFF : 0x00) : uint8_t(byte(rng));
                    if constexpr (requires { blk.qh; })
                        for (auto & q : blk.qh) q = extreme ? (high ? 0xFF : 0x00) : uint8_t(byte(rng));
                    if constexpr (requires { blk.m; }) blk.m = fp32_to_fp16(0.1f * normal(rng));
                }
            };
            if (t == dtype::q4_1) fill(reinterpret_cast<block_q4_1 *>(row));
            else if (t == dtype::q5_0) fill(reinterpret_cast<block_q5_0 *>(row));
            else if (t == dtype::q5_1) fill(reinterpret_cast<block_q5_1 *>(row));
            else fill(reinterpret_cast<block_iq4_nl *>(row));
            continue;
        }
        ops::quantize_row_weights(t, x.data(), row, n);
        if (r % 2 == 0) continue;
        for (int64_t b = 0; b < n / k_qk; ++b) {
            if (t == dtype::q8_0) {
                const int8_t extremes[] = {-128, 127, 0, -1};
                for (int i = 0; i < k_qk; ++i) reinterpret_cast<block_q8_0 *>(row)[b].qs[i] = extremes[(i + b + r) % 4];
            } else {
                for (int i = 0; i < k_qk / 2; ++i) reinterpret_cast<block_q4_0 *>(row)[b].qs[i] = (i + b) % 3 ? 0xF0 : 0x0F;
            }
        }
    }
    for (auto & v : x) v = normal(rng);
    x[0] = 0.f; // a zero element meets a nonzero weight
    c.act.resize(ops::activation_bytes(t, n));
    ops::quantize_activation(t, x.data(), c.act.data(), n);
    return c;
}

// The block counts of the AVX2 tests: odd halves, partial groups and steps, 44 (a 1408-wide row:
// 5 groups and a tail of 4), long rows (721 blocks; 1025: past the kernels' stack limit, where
// they hand over to AVX2).
constexpr int64_t k_block_counts[] = {1, 2, 3, 5, 8, 9, 13, 44, 48, 280, 640, 721, 1025};

// dot, dot_rows and dot_rows_batch (for 1 to 4 activation rows) of type t against the AVX2
// table's dot_rows, bit for bit.
void check_against_avx2(dtype t, decltype(ops::detail::kernels::dot) dot,
                        decltype(ops::detail::kernels::dot_rows) dot_rows,
                        decltype(ops::detail::kernels::dot_rows_batch) dot_rows_batch) {
    const ops::detail::kernels * avx2 = ops::detail::avx2_kernels(t);
    REQUIRE(avx2);
    REQUIRE(bool(avx2->dot_rows));
    for (int64_t nb : k_block_counts) {
        CAPTURE(nb);
        const int64_t rows = 5, n = nb * k_qk;
        const auto c = make_case(t, rows, n, uint32_t(nb));
        const size_t stride = size_t(frugal::row_bytes(t, n));
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
        // Up to k_batch activation rows at once (the first c.act, the others of other inputs),
        // into rows of out ldo apart.
        constexpr int64_t m_max = ops::detail::k_batch, ldo = rows + 1;
        const size_t act_bytes = ops::activation_bytes(t, n);
        std::vector<std::byte> acts(act_bytes * m_max);
        std::memcpy(acts.data(), c.act.data(), act_bytes);
        for (int64_t i = 1; i < m_max; ++i)
            std::memcpy(acts.data() + i * act_bytes, make_case(t, 1, n, uint32_t(nb + 100 * i)).act.data(), act_bytes);
        for (int64_t m = 1; m <= m_max; ++m) {
            CAPTURE(m);
            std::vector<float> out(size_t(m * ldo), -1.f);
            dot_rows_batch(c.w.data(), stride, rows, acts.data(), act_bytes, m, n, out.data(), ldo);
            for (int64_t i = 0; i < m; ++i) {
                avx2->dot_rows(c.w.data(), stride, rows, acts.data() + i * act_bytes, n, want.data());
                CHECK(std::memcmp(&out[size_t(i * ldo)], want.data(), sizeof(float) * size_t(rows)) == 0);
                CHECK(out[size_t(i * ldo + rows)] == -1.f); // nothing past the rows
            }
        }
    }
}

// The exact value of a stored row (IQ4_NL, Q4_1 or Q5_1) times an activation row (Q8_0, Q8_1) in
// double, Σ_b dw · dx · Σ_e q_e · x_e (+ m · s), and the sum of its terms' magnitudes (per
// element): what a float sum of the same terms may be off by is a few roundings of that.
struct exact_dot {
    double value = 0, magnitude = 0;
};
template <class Block, class Act>
exact_dot exact_block_dot(const Block * w, const Act * a, int64_t nb) {
    exact_dot r;
    for (int64_t b = 0; b < nb; ++b) {
        const double scale = double(fp16_to_fp32(w[b].d)) * double(fp16_to_fp32(a[b].d));
        for (int e = 0; e < k_qk; ++e) {
            const int nibble = (e < 16 ? w[b].qs[e] : w[b].qs[e - 16] >> 4) & 0xF;
            int q = nibble;
            if constexpr (std::is_same_v<Block, block_iq4_nl>) q = k_iq4_nl_values[nibble];
            if constexpr (requires { w[b].qh; }) {
                uint32_t qh;
                std::memcpy(&qh, w[b].qh, sizeof qh);
                q |= int(qh >> e & 1) << 4;
            }
            const double p = scale * q * a[b].qs[e];
            r.value += p, r.magnitude += std::abs(p);
        }
        if constexpr (requires { w[b].m; }) {
            const double p = double(fp16_to_fp32(w[b].m)) * double(fp16_to_fp32(a[b].s));
            r.value += p, r.magnitude += std::abs(p);
        }
    }
    return r;
}
exact_dot exact_row_dot(dtype stored, const std::byte * w, const std::byte * act, int64_t nb) {
    switch (stored) {
    case dtype::iq4_nl:
        return exact_block_dot(reinterpret_cast<const block_iq4_nl *>(w), reinterpret_cast<const block_q8_0 *>(act), nb);
    case dtype::q4_1:
        return exact_block_dot(reinterpret_cast<const block_q4_1 *>(w), reinterpret_cast<const ops::block_q8_1 *>(act), nb);
    case dtype::q5_1:
        return exact_block_dot(reinterpret_cast<const block_q5_1 *>(w), reinterpret_cast<const ops::block_q8_1 *>(act), nb);
    default: FAIL("no exact dot for " << dtype_name(stored)); return {};
    }
}

// A repacked type without an AVX2 loop (IQ4_NL, Q4_1, Q5_1): dot, dot_rows and dot_rows_batch
// against the exact sum of the stored rows' products (exact_row_dot) within the float rounding of
// about nb + 32 additions, and bit-identical among themselves.
void check_against_exact(dtype t, dtype stored, decltype(ops::detail::kernels::dot) dot,
                         decltype(ops::detail::kernels::dot_rows) dot_rows,
                         decltype(ops::detail::kernels::dot_rows_batch) dot_rows_batch) {
    for (int64_t nb : k_block_counts) {
        CAPTURE(nb);
        const int64_t rows = 5, n = nb * k_qk;
        constexpr int64_t m_max = ops::detail::k_batch, ldo = rows + 1;
        const weights_case c = make_case(t, rows, n, uint32_t(nb)), s = make_case(stored, rows, n, uint32_t(nb));
        const size_t stride = size_t(frugal::row_bytes(t, n)), act_bytes = ops::activation_bytes(t, n);
        std::vector<std::byte> acts(act_bytes * m_max);
        std::memcpy(acts.data(), c.act.data(), act_bytes);
        for (int64_t i = 1; i < m_max; ++i)
            std::memcpy(acts.data() + i * act_bytes, make_case(t, 1, n, uint32_t(nb + 100 * i)).act.data(), act_bytes);
        const auto near_exact = [&](float got, int64_t r, int64_t i) {
            const exact_dot want = exact_row_dot(stored, s.w.data() + size_t(r) * stride, acts.data() + i * act_bytes, nb);
            return std::abs(double(got) - want.value) <= double(nb + 32) * 0x1p-24 * want.magnitude;
        };
        std::vector<float> got(static_cast<size_t>(rows));
        dot_rows(c.w.data(), stride, rows, c.act.data(), n, got.data());
        for (int64_t r = 0; r < rows; ++r) {
            CAPTURE(r);
            CHECK(near_exact(got[size_t(r)], r, 0));
            const float single = dot(c.w.data() + size_t(r) * stride, c.act.data(), n);
            CHECK(std::memcmp(&single, &got[size_t(r)], sizeof(float)) == 0);
        }
        for (int64_t m = 1; m <= m_max; ++m) {
            CAPTURE(m);
            std::vector<float> out(size_t(m * ldo), -1.f);
            dot_rows_batch(c.w.data(), stride, rows, acts.data(), act_bytes, m, n, out.data(), ldo);
            for (int64_t i = 0; i < m; ++i) {
                dot_rows(c.w.data(), stride, rows, acts.data() + i * act_bytes, n, got.data());
                CHECK(std::memcmp(&out[size_t(i * ldo)], got.data(), sizeof(float) * size_t(rows)) == 0);
                for (int64_t r = 0; r < rows; ++r) CHECK(near_exact(out[size_t(i * ldo + r)], r, i));
                CHECK(out[size_t(i * ldo + rows)] == -1.f); // nothing past the rows
            }
        }
    }
}

// A repacked layout's loops (k: dot, dot_rows, dot_rows_batch) against the AVX2 ones where there
// are some (Q4_0, Q5_0, IQ4_NL: to the bit), else against the exact sum.
void check_repacked(dtype t, const ops::detail::kernels & k) {
    CAPTURE(std::string(dtype_name(t)));
    if (ops::detail::avx2_kernels(t)) check_against_avx2(t, k.dot, k.dot_rows, k.dot_rows_batch);
    else check_against_exact(t, ops::stored_type(t), k.dot, k.dot_rows, k.dot_rows_batch);
}

// K-quant (Q4_K, Q5_K, Q6_K) rows of random bytes (every quant and sub-block scale pattern) with
// ordinary positive fp16 super-block scales, against one Q8_K activation row: the single-row dot
// and the row loop of both builds against the AVX2 dot, bit for bit. 129 super-blocks is past the
// Q4_K/Q5_K row loop's stack limit, where it hands over to AVX2.
template <class Block>
void check_k_quant_against_avx2(dtype t, decltype(ops::detail::kernels::dot) dot,
                                decltype(ops::detail::kernels::dot_rows) dot_rows,
                                decltype(ops::detail::kernels::dot_rows_batch) dot_rows_batch = nullptr) {
    const ops::detail::kernels * avx2 = ops::detail::avx2_kernels(t);
    REQUIRE(avx2);
    std::mt19937 rng(7);
    std::uniform_int_distribution<int> byte(0, 255);
    std::uniform_real_distribution<float> scale(1e-4f, 1e-3f);
    std::normal_distribution<float> normal(0.f, 1.f);
    constexpr int64_t rows = 3;
    for (int64_t nb : {1, 2, 3, 7, 35, 129}) {
        CAPTURE(nb);
        const int64_t n = nb * k_qk_k;
        std::vector<Block> w(static_cast<size_t>(rows * nb));
        for (auto & b : w) {
            auto * bytes = reinterpret_cast<uint8_t *>(&b);
            for (size_t i = 0; i < sizeof b; ++i) bytes[i] = uint8_t(byte(rng));
            b.d = fp32_to_fp16(scale(rng));
            if constexpr (requires { b.dmin; }) b.dmin = fp32_to_fp16(scale(rng));
        }
        std::vector<float> x(static_cast<size_t>(n));
        for (auto & v : x) v = normal(rng);
        std::vector<std::byte> act(ops::activation_bytes(t, n));
        ops::quantize_activation(t, x.data(), act.data(), n);
        std::vector<float> got_rows(static_cast<size_t>(rows));
        const auto * wbytes = reinterpret_cast<const std::byte *>(w.data());
        dot_rows(wbytes, nb * sizeof(Block), rows, act.data(), n, got_rows.data());
        for (int64_t r = 0; r < rows; ++r) {
            CAPTURE(r);
            const Block * row = w.data() + r * nb;
            const float want = avx2->dot(row, act.data(), n), got = dot(row, act.data(), n);
            CHECK(std::memcmp(&got, &want, sizeof want) == 0);
            CHECK(std::memcmp(&got_rows[size_t(r)], &want, sizeof want) == 0);
        }
        if (!dot_rows_batch) continue;
        // Up to k_batch activation rows at once (the first act, the others of other inputs), into
        // rows of out ldo apart.
        constexpr int64_t m_max = ops::detail::k_batch, ldo = rows + 1;
        const size_t act_bytes = act.size();
        std::vector<std::byte> acts(act_bytes * m_max);
        std::memcpy(acts.data(), act.data(), act_bytes);
        for (int64_t i = 1; i < m_max; ++i) {
            for (auto & v : x) v = normal(rng);
            ops::quantize_activation(t, x.data(), acts.data() + i * act_bytes, n);
        }
        for (int64_t m = 1; m <= m_max; ++m) {
            CAPTURE(m);
            std::vector<float> out(size_t(m * ldo), -1.f);
            dot_rows_batch(wbytes, nb * sizeof(Block), rows, acts.data(), act_bytes, m, n, out.data(), ldo);
            for (int64_t i = 0; i < m; ++i)
                for (int64_t r = 0; r < rows; ++r) {
                    const float want = avx2->dot(w.data() + r * nb, acts.data() + i * act_bytes, n);
                    CHECK(std::memcmp(&out[size_t(i * ldo + r)], &want, sizeof want) == 0);
                }
            for (int64_t i = 0; i < m; ++i) CHECK(out[size_t(i * ldo + rows)] == -1.f); // nothing past the rows
        }
    }
}

} // namespace

TEST_CASE("AVX-512 kernels, emulated by SIMDe, equal the AVX2 ones to the bit" * doctest::timeout(120)) {
    if (!ops::detail::avx2_active()) FRUGAL_SKIP("no AVX2 on this CPU: nothing to compare the kernels with");
    namespace emu = frugal_test_simde; // each kernel is a row loop; its one-row case is the single dot
    SUBCASE("q8_0") {
        constexpr auto rows = emu::dot_rows_32<dtype::q8_0>;
        check_against_avx2(dtype::q8_0, emu::one_row<rows>, rows, emu::dot_rows_32_batch<dtype::q8_0>);
    }
    SUBCASE("q4_0") {
        constexpr auto rows = emu::dot_rows_32<dtype::q4_0>;
        check_against_avx2(dtype::q4_0, emu::one_row<rows>, rows, emu::dot_rows_32_batch<dtype::q4_0>);
    }
    SUBCASE("q5_0") {
        constexpr auto rows = emu::dot_rows_32<dtype::q5_0>;
        check_against_avx2(dtype::q5_0, emu::one_row<rows>, rows, emu::dot_rows_32_batch<dtype::q5_0>);
    }
    SUBCASE("q4_1") {
        constexpr auto rows = emu::dot_rows_32<dtype::q4_1>;
        check_against_avx2(dtype::q4_1, emu::one_row<rows>, rows, emu::dot_rows_32_batch<dtype::q4_1>);
    }
    SUBCASE("q5_1") {
        constexpr auto rows = emu::dot_rows_32<dtype::q5_1>;
        check_against_avx2(dtype::q5_1, emu::one_row<rows>, rows, emu::dot_rows_32_batch<dtype::q5_1>);
    }
    SUBCASE("repacked layouts") {
        const auto check = []<dtype T>(std::integral_constant<dtype, T>) {
            constexpr auto rows = emu::dot_rows_repacked<T>;
            check_repacked(T, {nullptr, nullptr, emu::one_row<rows>, nullptr, rows, emu::dot_rows_repacked_batch<T>});
        };
        check(std::integral_constant<dtype, dtype::q4_0_repacked>{});
        check(std::integral_constant<dtype, dtype::q5_0_repacked>{});
        check(std::integral_constant<dtype, dtype::iq4_nl_repacked>{});
        check(std::integral_constant<dtype, dtype::q4_1_repacked>{});
        check(std::integral_constant<dtype, dtype::q5_1_repacked>{});
    }
    SUBCASE("iq4_nl") {
        constexpr auto rows = emu::dot_rows_32<dtype::iq4_nl>;
        check_against_avx2(dtype::iq4_nl, emu::one_row<rows>, rows, emu::dot_rows_32_batch<dtype::iq4_nl>);
    }
    SUBCASE("q4_k") {
        constexpr auto rows = emu::dot_rows_q45_k<false>;
        check_k_quant_against_avx2<block_q4_k>(dtype::q4_k, emu::one_row<rows>, rows, emu::dot_rows_q45_k_batch<false>);
    }
    SUBCASE("q5_k") {
        constexpr auto rows = emu::dot_rows_q45_k<true>;
        check_k_quant_against_avx2<block_q5_k>(dtype::q5_k, emu::one_row<rows>, rows, emu::dot_rows_q45_k_batch<true>);
    }
    SUBCASE("q6_k") {
        constexpr auto rows = emu::dot_rows_q6_k;
        check_k_quant_against_avx2<block_q6_k>(dtype::q6_k, emu::one_row<rows>, rows, emu::dot_rows_q6_k_batch);
    }
    SUBCASE("q2_k") {
        constexpr auto rows = emu::dot_rows_q23_k<false>;
        check_k_quant_against_avx2<block_q2_k>(dtype::q2_k, emu::one_row<rows>, rows, emu::dot_rows_q23_k_batch<false>);
    }
    SUBCASE("q3_k") {
        constexpr auto rows = emu::dot_rows_q23_k<true>;
        check_k_quant_against_avx2<block_q3_k>(dtype::q3_k, emu::one_row<rows>, rows, emu::dot_rows_q23_k_batch<true>);
    }
    SUBCASE("iq4_xs") {
        constexpr auto rows = emu::dot_rows_iq4_xs;
        check_k_quant_against_avx2<block_iq4_xs>(dtype::iq4_xs, emu::one_row<rows>, rows, emu::dot_rows_iq4_xs_batch);
    }
}

TEST_CASE("AVX-512 kernels of the library equal the AVX2 ones to the bit" * doctest::timeout(60)) {
    if (!ops::detail::avx512_vnni_supported()) FRUGAL_SKIP("this CPU has no AVX-512 VNNI");
    for (dtype t : {dtype::q8_0, dtype::q4_0, dtype::q4_1, dtype::q5_0, dtype::q5_1, dtype::iq4_nl}) {
        CAPTURE(std::string(dtype_name(t)));
        const ops::detail::kernels * k = ops::detail::avx512_kernels(t);
        REQUIRE(k);
        REQUIRE(bool(k->dot_rows_batch));
        check_against_avx2(t, k->dot, k->dot_rows, k->dot_rows_batch);
        CHECK(ops::detail::decode_row_loop(t)); // and decode selects them
    }
    for (dtype t : {dtype::q4_0_repacked, dtype::q5_0_repacked, dtype::iq4_nl_repacked, dtype::q4_1_repacked,
                    dtype::q5_1_repacked}) {
        const ops::detail::kernels * k = ops::detail::avx512_kernels(t);
        REQUIRE(k);
        check_repacked(t, *k);
        CHECK(ops::detail::decode_row_loop(t)); // and decode selects them
    }
    // models' matrices of these types take the repacked loops, but on Intel's cores (stored ones
    // as fast there)
    for (dtype t : {dtype::q4_0, dtype::q5_0, dtype::iq4_nl, dtype::q4_1, dtype::q5_1})
        CHECK(ops::repacking_speeds_decode(t) == !ops::detail::intel_cpu());
    const auto check_k = [&]<class Block>(dtype t, Block) {
        CAPTURE(std::string(dtype_name(t)));
        const ops::detail::kernels * k = ops::detail::avx512_kernels(t);
        REQUIRE(k);
        REQUIRE(bool(k->dot_rows_batch));
        check_k_quant_against_avx2<Block>(t, k->dot, k->dot_rows, k->dot_rows_batch);
        CHECK(ops::detail::decode_row_loop(t)); // and decode selects its row loop
    };
    check_k(dtype::q2_k, block_q2_k{});
    check_k(dtype::q3_k, block_q3_k{});
    check_k(dtype::q4_k, block_q4_k{});
    check_k(dtype::q5_k, block_q5_k{});
    check_k(dtype::q6_k, block_q6_k{});
    check_k(dtype::iq4_xs, block_iq4_xs{});
}
