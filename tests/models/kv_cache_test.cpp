// kv_cache_test.cpp - a layer's cache rows (models/kv_cache.hpp): what is written comes back as
// written (F32), rounded to nearest even (F16, checked against the compiler's _Float16) or
// quantized as ggml quantizes a Q8_0 cache (checked against the plain reference quantizer), rows
// land at their positions, and column reads take the right slice.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <cstdint>
#include <limits>
#include <vector>

#include "common/test_support.hpp"
#include "models/kv_cache.hpp"
#include "reference/quant_ref.hpp"
#include "util/error.hpp"

using frugal::dtype;

TEST_CASE("kv cache rows: written rows read back exactly (f32) or rounded as _Float16 rounds (f16)") {
    const int64_t n_ctx = 40, width = 37, pos = 5, n = 9; // odd width: the conversions' scalar tails too
    auto x = frugal::test::random_floats(size_t(n * width), 4, -70000.f, 70000.f);
    // values that round in interesting ways: ties to even, subnormals, overflow, signed zero
    x[0] = 1.f + 0x1p-11f;       // a tie between 1 and 1 + 2^-10: even is 1
    x[1] = 1.f + 3 * 0x1p-11f;   // a tie: even is 1 + 2^-9
    x[2] = 0x1p-20f;             // subnormal in F16
    x[3] = 70000.f;              // past F16's largest finite (65504): infinity
    x[4] = -0.f;
    for (const dtype t : {dtype::f32, dtype::f16}) {
        CAPTURE(frugal::dtype_name(t));
        frugal::kv_rows rows(t, n_ctx, width);
        CHECK(rows.type() == t);
        CHECK(rows.width() == width);
        rows.write(pos, x.data(), n);
        std::vector<float> back(size_t(n * width));
        rows.read(pos, n, 0, width, back.data());
        for (size_t i = 0; i < back.size(); ++i) {
            CAPTURE(i);
            const float want = t == dtype::f32 ? x[i] : static_cast<float>(static_cast<_Float16>(x[i]));
            CHECK(std::signbit(back[i]) == std::signbit(want));
            CHECK(back[i] == want);
        }
        // A column slice of some rows.
        const int64_t col0 = 30, cols = 7, first = 2, count = 3;
        std::vector<float> slice(size_t(count * cols));
        rows.read(pos + first, count, col0, cols, slice.data());
        for (int64_t j = 0; j < count; ++j)
            for (int64_t c = 0; c < cols; ++c) CHECK(slice[size_t(j * cols + c)] == back[size_t((first + j) * width + col0 + c)]);
        // Another write at a later position leaves the earlier rows alone.
        const std::vector<float> later(size_t(width), 0.5f);
        rows.write(pos + n, later.data(), 1);
        std::vector<float> again(size_t(n * width));
        rows.read(pos, n, 0, width, again.data());
        CHECK(again == back);
    }
}

TEST_CASE("kv cache rows: a type a cache cannot hold is refused, naming it") {
    for (const dtype t : {dtype::bf16, dtype::q4_0}) {
        try {
            frugal::kv_rows rows(t, 4, 32);
            FAIL("no error");
        } catch (const frugal::error & e) {
            CHECK(e.code() == frugal::status::invalid_argument);
            CHECK(std::string(e.what()).find(frugal::dtype_name(t)) != std::string::npos);
        }
    }
}

TEST_CASE("kv cache rows split into heads: each head's positions contiguous, rows read back by head") {
    const int64_t n_ctx = 12, heads = 3, head_width = 5, width = heads * head_width, pos = 4, n = 3;
    const auto x = frugal::test::random_floats(size_t(n * width), 8);
    for (const dtype t : {dtype::f32, dtype::f16}) {
        CAPTURE(frugal::dtype_name(t));
        frugal::kv_rows rows(t, n_ctx, width, heads);
        CHECK(rows.position_stride() == head_width);
        CHECK(rows.head_stride() == n_ctx * head_width);
        rows.write(pos, x.data(), n);
        const auto value = [&](int64_t h, int64_t p, int64_t c) { // element c of head h at position p, as stored
            const int64_t i = h * rows.head_stride() + p * rows.position_stride() + c;
            if (t == dtype::f32) return static_cast<const float *>(rows.data())[i];
            _Float16 half;
            std::memcpy(&half, static_cast<const uint16_t *>(rows.data()) + i, sizeof half);
            return static_cast<float>(half);
        };
        for (int64_t h = 0; h < heads; ++h) {
            std::vector<float> back(size_t(n * head_width));
            rows.read(pos, n, h * head_width, head_width, back.data());
            for (int64_t j = 0; j < n; ++j)
                for (int64_t c = 0; c < head_width; ++c) {
                    const float written = x[size_t(j * width + h * head_width + c)];
                    const float want = t == dtype::f32 ? written : static_cast<float>(static_cast<_Float16>(written));
                    CHECK(value(h, pos + j, c) == want);
                    CHECK(back[size_t(j * head_width + c)] == want);
                }
        }
        std::vector<float> out(size_t(2 * n));
        CHECK_THROWS_WITH_AS(rows.read(pos, n, head_width - 1, 2, out.data()), doctest::Contains("within one head"),
                             frugal::error);
    }
    CHECK_THROWS_WITH_AS(frugal::kv_rows(dtype::f16, 4, 10, 3), doctest::Contains("do not split into 3 heads"),
                         frugal::error);
}

TEST_CASE("kv cache rows in Q8_0: each head's rows quantized per block as ggml's quantize_row_q8_0, read back as d · q") {
    // Two heads of 64 (two blocks each), head-major; one head of 96 (MLA's latent and rope parts).
    for (const auto & [heads, head_width] : {std::pair<int64_t, int64_t>{2, 64}, {1, 96}}) {
        CAPTURE(heads);
        const int64_t n_ctx = 10, width = heads * head_width, pos = 3, n = 4;
        auto x = frugal::test::random_floats(size_t(n * width), uint32_t(heads), -3.f, 3.f);
        std::fill_n(x.begin() + head_width, 32, 0.f); // an all-zero block: d = 0, quants 0
        x[5] = 300.f;                                 // a block dominated by one value
        frugal::kv_rows rows(dtype::q8_0, n_ctx, width, heads);
        CHECK(rows.position_stride() == head_width);
        rows.write(pos, x.data(), n);
        const auto * cache = static_cast<const frugal::block_q8_0 *>(rows.data());
        for (int64_t h = 0; h < heads; ++h)
            for (int64_t j = 0; j < n; ++j) {
                CAPTURE(h);
                CAPTURE(j);
                const float * src = x.data() + j * width + h * head_width;
                const auto want = frugal::ref::quantize_q8_0(src, head_width);
                // The blocks as stored, at their place in head h's run of positions.
                const frugal::block_q8_0 * blocks = cache + (h * rows.head_stride() + (pos + j) * head_width) / frugal::k_qk;
                std::vector<float> back(static_cast<size_t>(head_width));
                rows.read(pos + j, 1, h * head_width, head_width, back.data());
                for (int64_t b = 0; b < head_width / frugal::k_qk; ++b) {
                    CHECK(frugal::fp16_to_fp32(blocks[b].d) == want.d[size_t(b)]);
                    for (int64_t e = 0; e < frugal::k_qk; ++e) {
                        const size_t i = size_t(b * frugal::k_qk + e);
                        CHECK(blocks[b].qs[e] == want.qs[i]);
                        CHECK(back[i] == want.d[size_t(b)] * float(want.qs[i]));
                    }
                }
            }
        // A block-aligned column slice reads the same values.
        std::vector<float> all(size_t(n * head_width)), slice(size_t(n * 32));
        rows.read(pos, n, 0, head_width, all.data());
        rows.read(pos, n, 32, 32, slice.data());
        for (int64_t j = 0; j < n; ++j)
            for (int64_t c = 0; c < 32; ++c) CHECK(slice[size_t(j * 32 + c)] == all[size_t(j * head_width + 32 + c)]);
        // A slice that cuts a block is refused, naming its columns.
        CHECK_THROWS_WITH_AS(rows.read(pos, 1, 16, 32, slice.data()), doctest::Contains("[16, 48)"), frugal::error);
    }
    // Heads that are not whole blocks are refused at creation, naming their width.
    CHECK_THROWS_WITH_AS(frugal::kv_rows(dtype::q8_0, 4, 2 * 48, 2), doctest::Contains("are 48"), frugal::error);
}
