// ffn_test.cpp - the SwiGLU feed-forward (models/common.hpp) on its prefill path, which computes the
// up projection in column blocks: any block size must give what one block gives, and both must
// agree with a plain double-precision reference.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>

#include "common/test_support.hpp"
#include "common/test_weights.hpp"
#include "models/common.hpp"
#include "reference/ops_ref.hpp"

using frugal::dtype;
using frugal::test::make_weight;
using frugal::test::test_weight;

TEST_CASE("prefill's feed-forward: the up projection in column blocks equals one block and the reference" *
          doctest::timeout(60)) {
    // m >= small_batch takes the GEMM path (lowered to m here); n_ff = 224 splits into blocks of 48
    // columns (the last one 32) when a block may hold m · 48 floats.
    const int64_t D = 64, n_ff = 224, m = 40;
    const auto x = frugal::test::random_floats(size_t(m * D), 3, -1.f, 1.f);
    for (const dtype t : {dtype::f32, dtype::f16, dtype::q8_0, dtype::q4_0}) {
        CAPTURE(frugal::dtype_name(t));
        const test_weight gate = make_weight(t, n_ff, D, 10), up = make_weight(t, n_ff, D, 11),
                          down = make_weight(t, D, n_ff, 12);
        const frugal::ffn_weights w{gate.view(), up.view(), down.view()};
        frugal::ops::matmul_context mm(2);
        mm.small_batch = m;

        frugal::ffn_scratch whole, blocked;
        blocked.up_block_bytes = m * 48 * int64_t(sizeof(float));
        std::vector<float> y_whole(size_t(m * D)), y_blocked(size_t(m * D));
        frugal::swiglu_ffn(mm, w, x.data(), m, y_whole.data(), whole);
        frugal::swiglu_ffn(mm, w, x.data(), m, y_blocked.data(), blocked);
        CHECK(blocked.up.size() == size_t(m * 48)); // the blocked run never held all of up

        // Reference: the dequantized weights in double, on unrounded activations.
        const auto g = frugal::ref::matmul(x.data(), gate.values.data(), m, n_ff, D);
        const auto u = frugal::ref::matmul(x.data(), up.values.data(), m, n_ff, D);
        std::vector<float> h(size_t(m * n_ff));
        for (size_t i = 0; i < h.size(); ++i) h[i] = float(g[i] / (1 + std::exp(-g[i])) * u[i]);
        const auto want = frugal::ref::matmul(h.data(), down.values.data(), m, D, n_ff);

        double scale = 0, blocks_diff = 0, ref_diff = 0;
        for (size_t i = 0; i < want.size(); ++i) {
            scale = std::max(scale, std::fabs(want[i]));
            blocks_diff = std::max(blocks_diff, double(std::fabs(y_blocked[i] - y_whole[i])));
            ref_diff = std::max(ref_diff, std::fabs(double(y_whole[i]) - want[i]));
        }
        MESSAGE(frugal::dtype_name(t) << ": max |y| " << scale << ", blocked vs whole " << blocks_diff
                                      << ", whole vs reference " << ref_diff);
        REQUIRE(scale > 0.1);
        // Blocks change only which columns share a GEMM call, not any product or sum order of a
        // column, but oneDNN may pick other kernels for other widths: float rounding at most.
        CHECK(blocks_diff <= 1e-5 * scale);
        // The quantized types multiply rounded activations (Q8_0 blocks, F16) as llama.cpp does.
        CHECK(ref_diff <= (t == dtype::f32 ? 1e-5 : 2e-2) * scale);
    }
}
