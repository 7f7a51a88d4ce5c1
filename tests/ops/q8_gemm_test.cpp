// q8_gemm_test.cpp - the q8 prefill path (lib/ops/q8_gemm.hpp): llama.cpp's block arithmetic
// with integer block sums, on AVX-512 VNNI or AVX2. The AVX-512 kernel (q8_gemm_avx512.hpp) is
// compiled here against SIMD Everywhere's portable AVX-512, so it runs on any x86-64 CPU with
// AVX2. Each kernel is held to a plain double-precision reference built from the library's
// dequantizers (not from the packing under test), then drives matmul_context and the quantized
// parity models end to end with every call checked. The library's own builds are held to the same
// reference wherever the CPU has their instructions (AVX2: on any CI machine).
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "ops/simde_avx512.hpp"

#include "common/test_support.hpp"
#include "models/model.hpp"
#include "ops/amx_gemm.hpp"
#include "ops/matmul.hpp"
#include "ops/quant.hpp"
#include "runtime/session.hpp"

#define FRUGAL_AVX512
#define FRUGAL_AVX512_NS frugal_test_simde
#include "ops/q8_gemm_avx512.hpp"

using namespace frugal;
namespace q8 = frugal::ops::q8;

namespace {

// Q4_1, Q5_0, Q5_1 and K-quant rows of random bytes (every quant, fifth bit and 6-bit scale pattern)
// with ordinary positive fp16 (super-)block scales (the library has no weight quantizer for
// these; Q4_1's and Q5_1's offsets m negative, as a block's minimum); `extreme`: every quant at
// its largest magnitude (Q5_0: -16; 15, or 31 for Q5_K and Q5_1; Q6_K: -32; Q3_K: -4, scales -32; IQ4_NL:
// level -127; IQ4_XS: level -127, scales -32).
template <class Block>
std::vector<std::byte> random_block_weights(int64_t rows, int64_t k, std::mt19937 & rng, bool extreme) {
    std::uniform_int_distribution<int> byte(0, 255);
    std::uniform_real_distribution<float> scale(1e-3f, 1e-2f);
    constexpr int64_t elements =
        std::is_same_v<Block, block_q4_1> || std::is_same_v<Block, block_q5_0> || std::is_same_v<Block, block_q5_1> ||
                std::is_same_v<Block, block_iq4_nl>
            ? k_qk
            : k_qk_k;
    std::vector<Block> blocks(static_cast<size_t>(rows * (k / elements)));
    for (auto & b : blocks) {
        auto * bytes = reinterpret_cast<uint8_t *>(&b);
        for (size_t i = 0; i < sizeof b; ++i) bytes[i] = uint8_t(byte(rng));
        b.d = fp32_to_fp16(scale(rng));
        if constexpr (std::is_same_v<Block, block_q5_0>) {
            if (!extreme) continue; // q = 0 - 16
            std::memset(b.qs, 0, sizeof b.qs);
            std::memset(b.qh, 0, sizeof b.qh);
        } else if constexpr (std::is_same_v<Block, block_q4_1> || std::is_same_v<Block, block_q5_1>) {
            b.m = fp32_to_fp16(-16.f * scale(rng));
            if (!extreme) continue; // q = 15 or 31
            std::memset(b.qs, 0xFF, sizeof b.qs);
            if constexpr (requires { b.qh; }) std::memset(b.qh, 0xFF, sizeof b.qh);
        } else if constexpr (std::is_same_v<Block, block_q6_k>) {
            if (!extreme) continue; // q = 0 - 32
            std::memset(b.ql, 0, sizeof b.ql);
            std::memset(b.qh, 0, sizeof b.qh);
        } else if constexpr (std::is_same_v<Block, block_iq4_nl>) {
            if (!extreme) continue; // every nibble 0: level -127
            std::memset(b.qs, 0, sizeof b.qs);
        } else if constexpr (std::is_same_v<Block, block_iq4_xs>) {
            if (!extreme) continue; // every nibble 0: level -127, with every scale at -32
            std::memset(b.qs, 0, sizeof b.qs);
            std::memset(b.scales_l, 0, sizeof b.scales_l);
            b.scales_h = 0;
        } else if constexpr (std::is_same_v<Block, block_q3_k>) {
            if (!extreme) continue; // q = 0 - 4 with every scale at -32 (all 12 scale bytes 0)
            std::memset(b.qs, 0, sizeof b.qs);
            std::memset(b.hmask, 0, sizeof b.hmask);
            std::memset(b.scales, 0, sizeof b.scales);
        } else {
            b.dmin = fp32_to_fp16(scale(rng));
            if (!extreme) continue;
            std::memset(b.qs, 0xFF, sizeof b.qs);
            if constexpr (std::is_same_v<Block, block_q5_k>) std::memset(b.qh, 0xFF, sizeof b.qh);
        }
    }
    std::vector<std::byte> out(blocks.size() * sizeof(Block));
    std::memcpy(out.data(), blocks.data(), out.size());
    return out;
}

// rows x k weights of type t from seeded normal floats through the library's quantizers (random
// bytes for K-quants); for Q8_0 every third row holds extreme quants (-128, 127, 0, -1) to reach
// the ends of the ranges. `extreme`: every quant at the end of its range that makes the largest
// sums against the largest activations (Q8_0, Q4_0 and Q5_0: -128, -8 and -16; Q4_1: 15; Q5_1: 31;
// K-quants: 15, 31, -32 and -4; IQ4_NL and IQ4_XS: -127).
std::vector<std::byte> make_weights(dtype t, int64_t rows, int64_t k, uint32_t seed, bool extreme = false) {
    if (const dtype stored = ops::stored_type(t); stored != t) { // the original type's weights, repacked
        const auto plain = make_weights(stored, rows, k, seed, extreme);
        std::vector<std::byte> repacked(plain.size());
        ops::repack_rows(stored, plain.data(), repacked.data(), rows, k);
        return repacked;
    }
    std::mt19937 rng(seed);
    if (t == dtype::q5_0) return random_block_weights<block_q5_0>(rows, k, rng, extreme);
    if (t == dtype::q4_1) return random_block_weights<block_q4_1>(rows, k, rng, extreme);
    if (t == dtype::q5_1) return random_block_weights<block_q5_1>(rows, k, rng, extreme);
    if (t == dtype::q4_k) return random_block_weights<block_q4_k>(rows, k, rng, extreme);
    if (t == dtype::q5_k) return random_block_weights<block_q5_k>(rows, k, rng, extreme);
    if (t == dtype::q6_k) return random_block_weights<block_q6_k>(rows, k, rng, extreme);
    if (t == dtype::q3_k) return random_block_weights<block_q3_k>(rows, k, rng, extreme);
    if (t == dtype::iq4_nl) return random_block_weights<block_iq4_nl>(rows, k, rng, extreme);
    if (t == dtype::iq4_xs) return random_block_weights<block_iq4_xs>(rows, k, rng, extreme);
    if (t == dtype::q2_k) return random_block_weights<block_q2_k>(rows, k, rng, extreme);
    std::normal_distribution<float> normal(0.f, 1.f);
    const int64_t stride = row_bytes(t, k);
    std::vector<std::byte> plain(static_cast<size_t>(rows * stride));
    std::vector<float> x(static_cast<size_t>(k));
    for (int64_t r = 0; r < rows; ++r) {
        for (auto & v : x) v = normal(rng);
        ops::quantize_row_weights(t, x.data(), plain.data() + r * stride, k);
        if (extreme) {
            for (int64_t b = 0; b < k / k_qk; ++b) {
                if (t == dtype::q8_0)
                    std::memset(reinterpret_cast<block_q8_0 *>(plain.data() + r * stride)[b].qs, 0x80, k_qk);
                else // nibbles 0: q = -8
                    std::memset(reinterpret_cast<block_q4_0 *>(plain.data() + r * stride)[b].qs, 0, k_qk / 2);
            }
            continue;
        }
        if (t != dtype::q8_0 || r % 3 != 1) continue;
        auto * blocks = reinterpret_cast<block_q8_0 *>(plain.data() + r * stride);
        const int8_t extremes[] = {-128, 127, 0, -1};
        for (int64_t b = 0; b < k / k_qk; ++b)
            for (int i = 0; i < k_qk; ++i) blocks[b].qs[i] = extremes[(i + b + r) % 4];
    }
    return plain;
}

std::vector<float> random_activations(int64_t m, int64_t k, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal(0.f, 1.f);
    std::vector<float> x(static_cast<size_t>(m * k));
    for (auto & v : x) v = normal(rng);
    if (m * k > 40) x[7] = 0.f, x[33] = 25.f; // a zero and an outlier in the first row's blocks
    return x;
}

// The activation row x[k] as weight type t's kernels multiply it: its Q8_0 (Q8_K) blocks dequantized
// (Q4_1's and Q5_1's Q8_1 blocks have Q8_0's quants and scales).
void activation_values(dtype t, const float * x, int64_t k, float * out) {
    const dtype format = q8::super_blocks(t) ? t : dtype::q8_0;
    std::vector<std::byte> buf(ops::activation_bytes(format, k));
    ops::quantize_activation(format, x, buf.data(), k);
    if (!q8::super_blocks(t)) return ops::dequantize_row(dtype::q8_0, buf.data(), out, k);
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
    const int64_t terms = (1 + q8::sums_per_block(t)) * (k / k_qk);
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
// extreme: make_weights' extreme quants against activations that quantize to 127 (stored as 255),
// the largest sums the int16 and int32 lanes must hold. (Q8_K maps each super-block's largest
// magnitude to -128: one -1 per 256 puts the 127/128 elsewhere at 127.)
void check_chunk(const q8::kernel & kernel, dtype t, int64_t m, int64_t cols, int64_t k, uint32_t seed,
                 bool extreme = false) {
    CAPTURE(std::string(kernel.isa));
    CAPTURE(std::string(dtype_name(t)));
    CAPTURE(m);
    CAPTURE(cols);
    CAPTURE(k);
    CAPTURE(extreme);
    const auto w = make_weights(t, cols, k, seed, extreme);
    std::vector<float> x = random_activations(m, k, seed + 1);
    if (extreme)
        for (int64_t j = 0; j < m * k; ++j)
            x[size_t(j)] = !q8::super_blocks(t) ? 1.f : j % k_qk_k == 0 ? -1.f : 127.f / 128.f;
    const int64_t nb = k / k_qk, ldy = kernel.chunk_cols + 3;
    std::vector<uint8_t> xq(static_cast<size_t>(m * k));
    std::vector<float> xd(static_cast<size_t>(m * nb));
    std::vector<int16_t> x_sums(static_cast<size_t>(m * nb * 2));
    q8::quantize_activations(t, x.data(), m, k, xq.data(), xd.data(), x_sums.data());
    std::vector<std::byte> scratch(kernel.scratch_bytes(k));
    constexpr float sentinel = -12345.f;
    std::vector<float> y(static_cast<size_t>(m * ldy), sentinel);
    const q8::activations act{xq.data(), xd.data(), q8::sums_per_block(t) ? x_sums.data() : nullptr, k};
    kernel.run(t, w.data(), size_t(row_bytes(t, k)), cols, act, m, y.data(), ldy, scratch.data());
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

constexpr dtype k_types[] = {dtype::q8_0, dtype::q4_0, dtype::q4_0_repacked, dtype::q5_0, dtype::q5_0_repacked,
                             dtype::q4_1, dtype::q4_1_repacked, dtype::q5_1, dtype::q5_1_repacked, dtype::q2_k, dtype::q3_k, dtype::q4_k, dtype::q5_k, dtype::q6_k,
                             dtype::iq4_nl, dtype::iq4_nl_repacked, dtype::iq4_xs};

// Every type; row counts around the kernels' row tiles; one column, a partial and a whole tile
// (tiles are half a chunk), and a whole chunk; short rows and rows long enough to be split.
void check_chunks(const q8::kernel & kernel) {
    uint32_t seed = 1;
    const int64_t cc = kernel.chunk_cols;
    for (dtype t : k_types) {
        if (!kernel.takes(t)) continue;
        const int64_t k = q8::super_blocks(t) ? 2 * k_qk_k : 3 * k_qk;
        for (int64_t m : {1, 2, 3, 4, 5, 7, 9})
            for (int64_t cols : {int64_t(1), int64_t(5), cc / 2, cc / 2 + 1, cc - 1, cc})
                check_chunk(kernel, t, m, cols, k, seed++);
        check_chunk(kernel, t, 13, cc, 1536, seed++); // a model's row length
        check_chunk(kernel, t, 5, cc, 512, seed++, true);
        // Rows long enough that the AVX-512 kernel packs and multiplies them in parts (2: an odd
        // count of blocks split unevenly; 3), adding each part's products to the last's, a
        // partial tile's too.
        const int64_t two_parts = q8::super_blocks(t) ? 79 * k_qk_k : 625 * k_qk;
        check_chunk(kernel, t, 5, cc, two_parts, seed++);
        check_chunk(kernel, t, 6, cc / 2 + 3, two_parts, seed++);
        check_chunk(kernel, t, 3, cc, 32768, seed++);
    }
}

// The AVX-512 kernel built against SIMDe.
const q8::kernel k_simde{"avx512-vnni (SIMDe)", frugal_test_simde::q8_chunk, q8::supports, q8::k_chunk_cols,
                         frugal_test_simde::k_scratch_per_block, frugal_test_simde::quantize_activations};

// A kernel under test as the library calls it (from its OpenMP threads), each call counted and
// held to the reference on the very operands it was given: inside a model, the f32 path and q8
// see different inputs after the first layer, so only a per-call check is exact.
std::atomic<const q8::kernel *> g_checked{nullptr};
std::atomic<int> g_calls{0}, g_wrong{0}, g_quantizations{0};
void checked_chunk(dtype t, const std::byte * w, size_t w_stride, int64_t cols, const q8::activations & a, int64_t m,
                   float * y, int64_t ldy, std::byte * scratch) {
    ++g_calls;
    g_checked.load()->run(t, w, w_stride, cols, a, m, y, ldy, scratch);
    std::vector<float> xf(static_cast<size_t>(m * a.k)); // (q − 128) · d, as the kernel reads them
    for (int64_t j = 0; j < m * a.k; ++j) xf[size_t(j)] = float(int(a.q[j]) - q8::k_act_offset) * a.d[j / k_qk];
    const reference ref = reference_of_values(t, weight_values(t, w, w_stride, cols, a.k), xf, cols, m, a.k);
    for (int64_t i = 0; i < m; ++i)
        for (int64_t c = 0; c < cols; ++c) {
            const size_t at = size_t(i * cols + c);
            g_wrong += !(std::fabs(y[i * ldy + c] - ref.y[at]) <= ref.bound[at]);
        }
}

// The kernel under test's own quantizer (or the portable one), each call counted.
void counted_quantize(dtype t, const float * x, int64_t m, int64_t k, uint8_t * q, float * d, int16_t * sums) {
    ++g_quantizations;
    const q8::quantize_fn own = g_checked.load()->quantize;
    (own ? own : q8::quantize_activations)(t, x, m, k, q, d, sums);
}

// Puts `kernel`, each call checked, in place of the library's own choice, and restores that
// when a test case ends, however it ends.
class checked_kernel {
public:
    explicit checked_kernel(const q8::kernel & kernel)
        : checked_{kernel.isa,        checked_chunk,           kernel.takes,
                   kernel.chunk_cols, kernel.scratch_per_block, counted_quantize} {
        g_checked = &kernel;
        g_calls = 0;
        g_wrong = 0;
        g_quantizations = 0;
        q8::set_chunk_kernel_for_tests(&checked_);
    }
    ~checked_kernel() { q8::set_chunk_kernel_for_tests(nullptr); }
    checked_kernel(const checked_kernel &) = delete;
    checked_kernel & operator=(const checked_kernel &) = delete;

private:
    q8::kernel checked_;
};

// The kernels this CPU can run: the emulated AVX-512 one, and the library's native builds (AVX2
// with AVX-VNNI where the CPU has it).
std::vector<const q8::kernel *> kernels_here() {
    std::vector<const q8::kernel *> out{&k_simde};
    for (const q8::kernel * k : {q8::avx512_kernel(), q8::avx2_vnni_kernel(), q8::avx2_kernel()})
        if (k) out.push_back(k);
    return out;
}

} // namespace

TEST_CASE("q8 kernel, emulated by SIMDe, equals llama.cpp's block arithmetic" * doctest::timeout(120)) {
    if (!ops::detail::avx2_active()) FRUGAL_SKIP("no AVX2 on this CPU: SIMDe's emulation here is built for AVX2");
    check_chunks(k_simde);
}

TEST_CASE("q8 kernels of the library equal llama.cpp's block arithmetic" * doctest::timeout(60)) {
    const q8::kernel * avx512 = q8::avx512_kernel();
    const q8::kernel * avx2_vnni = q8::avx2_vnni_kernel();
    const q8::kernel * avx2 = q8::avx2_kernel();
    // CPUID decides, AVX-512 VNNI first, then AVX-VNNI, and bench reports whether it runs natively.
    CHECK((avx512 != nullptr) == ops::detail::avx512_vnni_supported());
    CHECK((avx2_vnni != nullptr) == (ops::detail::avx2_active() && ops::detail::avx_vnni_supported()));
    CHECK((avx2 != nullptr) == ops::detail::avx2_active());
    CHECK(q8::chunk_kernel() == (avx512 ? avx512 : avx2_vnni ? avx2_vnni : avx2));
    CHECK(ops::prefill_gemm_native(ops::prefill_gemm::q8) == (q8::chunk_kernel() != nullptr));
    if (!avx512 && !avx2) FRUGAL_SKIP("this CPU has neither AVX-512 VNNI nor AVX2: the library has no q8 kernel here");
    for (const q8::kernel * k : {avx512, avx2_vnni, avx2})
        if (k) check_chunks(*k);
    // Unasked, a prompt's batch of a q8 type takes q8 (from ops::amx_bf16_from rows, bf16 on AMX).
    CHECK(ops::default_prefill_gemm() == ops::prefill_gemm::automatic);
    for (dtype t : {dtype::q4_0, dtype::q4_k}) {
        const int64_t from = ops::amx_bf16_from(t);
        CHECK(ops::prefill_gemm_for(ops::prefill_gemm::automatic, t, from - 1) == ops::prefill_gemm::q8);
        CHECK(ops::prefill_gemm_for(ops::prefill_gemm::automatic, t, from) ==
              (ops::amx::bf16_available() ? ops::prefill_gemm::bf16 : ops::prefill_gemm::q8));
    }
    // Q4_1's block offsets keep it off bf16 at any row count.
    CHECK(ops::prefill_gemm_for(ops::prefill_gemm::automatic, dtype::q4_1, 4096) == ops::prefill_gemm::q8);
}

TEST_CASE("the kernels' own activation quantizers equal quantize_activations bit for bit") {
    if (!ops::detail::avx2_active()) FRUGAL_SKIP("no AVX2 on this CPU: SIMDe's emulation here is built for AVX2");
    std::vector<const q8::kernel *> kernels;
    for (const q8::kernel * k : kernels_here())
        if (k->quantize) kernels.push_back(k);
    REQUIRE(!kernels.empty()); // SIMDe's build of the AVX-512 one at least
    // Q8_0 blocks without block sums (Q8_0) and with (Q5_1); Q8_K with (Q4_K), with sums per half
    // (Q2_K) and without (Q6_K).
    for (dtype t : {dtype::q8_0, dtype::q5_1, dtype::q4_k, dtype::q2_k, dtype::q6_k})
        for (int64_t k : {int64_t(256), int64_t(1536)})
            for (int64_t m : {1, 3, 6}) {
                std::vector<float> x = random_activations(m, k, uint32_t(m * k));
                x[40] = -30.f, x[41] = 30.f; // equal magnitudes: the first, negative, sets Q8_K's scale
                if (m >= 3) {
                    std::fill(x.begin() + k, x.begin() + k + 256, 0.f); // an all-zero super-block
                    for (int64_t j = 2 * k; j < 3 * k; ++j) x[size_t(j)] *= 1e-6f; // fp16 scales go subnormal
                }
                const int64_t nb = k / k_qk;
                std::vector<uint8_t> want_q(size_t(m * k));
                std::vector<float> want_d(size_t(m * nb));
                const int64_t spb = q8::sums_per_block(t), sum_len = spb ? k_qk / spb : 0;
                std::vector<int16_t> want_sums(size_t(m * nb * std::max<int64_t>(spb, 1)), -1);
                q8::quantize_activations(t, x.data(), m, k, want_q.data(), want_d.data(), want_sums.data());
                if (spb) { // the exact sums are those of the stored quants, per block or half
                    int64_t wrong_sums = 0;
                    for (int64_t b = 0; b < m * nb * spb; ++b) {
                        int sum = 0;
                        for (int64_t e = 0; e < sum_len; ++e) sum += int(want_q[size_t(b * sum_len + e)]) - q8::k_act_offset;
                        wrong_sums += want_sums[size_t(b)] != sum;
                    }
                    CHECK(wrong_sums == 0);
                }
                for (const q8::kernel * kernel : kernels) {
                    CAPTURE(std::string(kernel->isa));
                    CAPTURE(std::string(dtype_name(t)));
                    CAPTURE(k);
                    CAPTURE(m);
                    std::vector<uint8_t> q(want_q.size());
                    std::vector<float> d(want_d.size());
                    std::vector<int16_t> sums(want_sums.size(), -1);
                    kernel->quantize(t, x.data(), m, k, q.data(), d.data(), sums.data());
                    CHECK(q == want_q);
                    CHECK(std::memcmp(d.data(), want_d.data(), d.size() * sizeof(float)) == 0);
                    CHECK(sums == want_sums);
                }
            }
}

// linear_many's products that share one q8 activation format take one quantization of x; mixed
// formats go one linear() each. Either way each product is linear()'s own, bit for bit.
TEST_CASE("linear_many equals linear per product, with and without a shared q8 quantization") {
    if (!ops::detail::avx2_active()) FRUGAL_SKIP("no AVX2 on this CPU: SIMDe's emulation here is built for AVX2");
    const int64_t k = 512, m = 30; // small_batch lowered to m below: the GEMM paths
    const std::vector<std::vector<std::pair<dtype, int64_t>>> groups = {
        {{dtype::q4_k, 40}, {dtype::q6_k, 24}, {dtype::q5_k, 8}, {dtype::q3_k, 16}}, // Q8_K, with block sums for two
        {{dtype::q2_k, 24}, {dtype::q2_k, 40}}, // Q8_K with sums per half
        {{dtype::q2_k, 24}, {dtype::q4_k, 16}}, // Q8_K, sums per half and per block: one quantization each
        {{dtype::q4_0, 40}, {dtype::q8_0, 16}, {dtype::q5_0_repacked, 33}}, // Q8_0 blocks
        {{dtype::q4_0, 16}, {dtype::q4_k, 16}, {dtype::f16, 8}},  // no common format
    };
    const auto x = random_activations(m, k, 11);
    for (const q8::kernel * kernel : kernels_here())
        for (const auto & group : groups) {
            CAPTURE(std::string(kernel->isa));
            CAPTURE(std::string(dtype_name(group.front().first)));
            const checked_kernel checked(*kernel);
            ops::matmul_context ctx(1); // one thread: one quantizer call per quantization
            ctx.prefill = ops::prefill_gemm::q8;
            ctx.small_batch = m;
            std::vector<std::vector<std::byte>> weights;
            std::vector<std::vector<float>> many, one;
            std::vector<ops::row_product> products;
            for (const auto & [t, n] : group) {
                weights.push_back(make_weights(t, n, k, uint32_t(n)));
                many.emplace_back(size_t(m * (n + 2)), 0.f);
                one.emplace_back(size_t(m * (n + 2)), 0.f);
                const raw_view w{t, weights.back().data(), frugal::shape{n, k}};
                products.push_back({w, many.back().data(), n + 2});
            }
            ctx.linear_many(products, x.data(), m);
            // The shared quantization: where every product takes q8 with one format, one call.
            // Formats: Q8_0 blocks, Q8_K, and Q8_K with sums per half (Q2_K).
            const auto format = [](dtype t) { return t == dtype::q2_k ? 2 : int(q8::super_blocks(t)); };
            int q8_products = 0;
            bool one_format = true;
            for (const auto & [t, n] : group) {
                const bool q8 = ops::prefill_gemm_for(ops::prefill_gemm::q8, t) == ops::prefill_gemm::q8;
                q8_products += q8;
                one_format = one_format && q8 && format(t) == format(group.front().first);
            }
            CHECK(g_quantizations == (one_format ? 1 : q8_products));
            for (size_t i = 0; i < products.size(); ++i)
                ctx.linear(products[i].w, x.data(), m, one[i].data(), products[i].ldy);
            CHECK(g_wrong == 0);
            for (size_t i = 0; i < products.size(); ++i) {
                CAPTURE(i);
                CHECK(many[i] == one[i]);
            }
        }
}

TEST_CASE("a weight takes the GEMM from its path's measured crossover, or from gemm_from_rows, the row kernels below it" *
          doctest::timeout(60)) {
    ops::matmul_context ctx(2);
    ctx.prefill = ops::prefill_gemm::q8;
    const q8::kernel * kernel = q8::chunk_kernel();
    const bool panels = ctx.panels_available(dtype::f32);
    const int64_t k = 512, n = 40;
    const dtype types[] = {dtype::q4_0, dtype::q8_0, dtype::q5_0, dtype::q4_k, dtype::q6_k, dtype::f16};
    std::vector<std::vector<std::byte>> weights;
    for (dtype t : types) weights.push_back(make_weights(t, n, k, 21));
    const auto view = [&](size_t i) { return raw_view{types[i], weights[i].data(), frugal::shape{n, k}}; };
    const auto x = random_activations(ctx.small_batch, k, 5);
    // The crossover each type's path here was measured at (matmul.hpp), before small_batch's cap.
    const auto measured = [&](dtype t) {
        if (kernel && kernel->takes(t)) {
            const int64_t own = kernel->gemm_from ? kernel->gemm_from(t) : 0;
            return own > 0 ? own : ops::matmul_context::k_default_gemm_from;
        }
        if (panels) return ops::matmul_context::k_panels_gemm_from;
        return t == dtype::f16 ? ops::matmul_context::k_f16_slab_gemm_from : ops::matmul_context::k_default_gemm_from;
    };
    // What each path gives: the row kernels, and the GEMM (forced by a small_batch of 1).
    const auto by_rows = [&](size_t i, int64_t m) {
        std::vector<float> y(size_t(m * n));
        std::vector<std::byte> scratch;
        ops::matmul_rows(view(i), x.data(), m, y.data(), scratch, 2);
        return y;
    };
    const auto by_gemm = [&](size_t i, int64_t m) {
        ops::matmul_context packed(2);
        packed.prefill = ops::prefill_gemm::q8;
        packed.small_batch = 1;
        std::vector<float> y(size_t(m * n));
        packed.linear(view(i), x.data(), m, y.data());
        return y;
    };
    for (size_t i = 0; i < std::size(types); ++i) {
        CAPTURE(std::string(dtype_name(types[i])));
        const int64_t from = ctx.gemm_from(types[i]);
        CHECK(from == std::min(ctx.small_batch, measured(types[i])));
        REQUIRE(from >= 2);
        REQUIRE(from <= ctx.small_batch);
        for (int64_t m : {from - 1, from}) {
            CAPTURE(m);
            const auto rows = by_rows(i, m), gemm = by_gemm(i, m);
            REQUIRE(rows != gemm); // the two paths sum in different orders: the test can tell them apart
            std::vector<float> y(size_t(m * n));
            ctx.linear(view(i), x.data(), m, y.data());
            CHECK(y == (m < from ? rows : gemm));
        }
    }
    // gemm_from_rows (frugal bench --gemm-from) puts every type's crossover where it says, past
    // small_batch too, and linear follows it; 0 gives the measured ones back.
    for (int64_t rows : {int64_t(3), ctx.small_batch + 16}) {
        ctx.gemm_from_rows = rows;
        for (dtype t : types) CHECK(ctx.gemm_from(t) == rows);
    }
    ctx.gemm_from_rows = 3;
    for (int64_t m : {2, 3}) {
        std::vector<float> y(size_t(m * n));
        ctx.linear(view(0), x.data(), m, y.data());
        CHECK(y == (m < 3 ? by_rows(0, m) : by_gemm(0, m)));
    }
    ctx.gemm_from_rows = 0;
    for (dtype t : types) CHECK(ctx.gemm_from(t) == std::min(ctx.small_batch, measured(t)));
    // linear_many splits a call by path: at Q4_0's crossover it packs, and Q6_K, whose crossover is
    // higher wherever one was measured, stays on the row kernels.
    const int64_t m = ctx.gemm_from(dtype::q4_0);
    if (ctx.gemm_from(dtype::q6_k) <= m) return;
    std::vector<float> y0(size_t(m * n)), y1(size_t(m * n));
    const ops::row_product products[] = {{view(4), y1.data()}, {view(0), y0.data()}};
    ctx.linear_many(products, x.data(), m);
    CHECK(y0 == by_gemm(0, m));
    CHECK(y1 == by_rows(4, m));
}

TEST_CASE("prefill_gemm::q8 runs the q8 kernels through matmul_context, with f32's results" * doctest::timeout(120)) {
    if (!ops::detail::avx2_active()) FRUGAL_SKIP("no AVX2 on this CPU: SIMDe's emulation here is built for AVX2");
    const int64_t k = 256, m = 30;
    for (const q8::kernel * kernel : kernels_here())
        for (dtype t : k_types)
            for (int64_t n : {50, 96}) { // a partial last chunk, and whole ones
                CAPTURE(std::string(kernel->isa));
                CAPTURE(std::string(dtype_name(t)));
                CAPTURE(n);
                const auto wbytes = make_weights(t, n, k, uint32_t(n));
                const raw_view w{t, wbytes.data(), frugal::shape{n, k}};
                const auto x = random_activations(m, k, 5);
                const reference ref = reference_product(t, wbytes.data(), n, x.data(), m, k);
                const int64_t ldy = n + 4;
                for (int threads : {1, 2}) {
                    CAPTURE(threads);
                    ops::matmul_context ctx(threads);
                    ctx.prefill = ops::prefill_gemm::q8;
                    std::vector<float> y(static_cast<size_t>(m * ldy), 0.f);
                    {
                        const checked_kernel checked(*kernel);
                        ctx.linear(w, x.data(), m, y.data(), ldy);
                        const int64_t chunks = (n + kernel->chunk_cols - 1) / kernel->chunk_cols;
                        CHECK(g_calls == (kernel->takes(t) ? chunks : 0));
                        CHECK(g_wrong == 0);
                    }
                    if (!kernel->takes(t)) { // the f32 path, which is the same arithmetic
                        std::vector<float> y_f32(y.size(), 0.f);
                        ctx.prefill = ops::prefill_gemm::f32;
                        ctx.linear(w, x.data(), m, y_f32.data(), ldy);
                        CHECK(y == y_f32);
                    }
                    int64_t bad = 0;
                    for (int64_t i = 0; i < m; ++i)
                        for (int64_t c = 0; c < n; ++c) {
                            const double want = ref.y[size_t(i * n + c)], bound = ref.bound[size_t(i * n + c)];
                            bad += !(std::fabs(y[size_t(i * ldy + c)] - want) <= bound);
                        }
                    CHECK(bad == 0);
                }
            }
}

TEST_CASE("prefill_gemm::q8 without a q8 kernel is the f32 path" * doctest::timeout(60)) {
    // The CPU's kernels set aside as on a CPU without AVX2 (AVX-512 VNNI's cannot be: skip there).
    if (q8::avx512_kernel()) FRUGAL_SKIP("AVX-512 VNNI: its q8 kernel cannot be set aside here");
    const ops::detail::force_scalar_scope no_simd(true);
    CHECK(q8::chunk_kernel() == nullptr);
    CHECK_FALSE(ops::prefill_gemm_native(ops::prefill_gemm::q8));
    const int64_t k = 256, m = 30, n = 40;
    for (dtype t : k_types) {
        CAPTURE(std::string(dtype_name(t)));
        const auto wbytes = make_weights(t, n, k, 3);
        const raw_view w{t, wbytes.data(), frugal::shape{n, k}};
        const auto x = random_activations(m, k, 4);
        ops::matmul_context ctx(2);
        std::vector<float> y_f32(static_cast<size_t>(m * n)), y_q8(static_cast<size_t>(m * n));
        ctx.prefill = ops::prefill_gemm::f32;
        ctx.linear(w, x.data(), m, y_f32.data(), n);
        ctx.prefill = ops::prefill_gemm::q8;
        ctx.linear(w, x.data(), m, y_q8.data(), n);
        CHECK(y_q8 == y_f32);
    }
}

// One parity model through `kernel` (each call checked) and through the f32 path: see below.
void check_parity_model(const q8::kernel & kernel, const std::string & name) {
    const auto model = frugal::load_model(frugal::test::parity_fixture(name + ".gguf").string(), {});
    const int64_t V = model->config().n_vocab;
    const auto tokens = frugal::test::random_tokens(40, V, 9); // every crossover's rows (gemm_from <= 40): the GEMM paths
    std::vector<float> f32, q8;                                // [40, V]
    for (const auto & [g, out] : {std::pair{ops::prefill_gemm::f32, &f32}, std::pair{ops::prefill_gemm::q8, &q8}}) {
        frugal::session s(model, 64);
        s.set_prefill_gemm(g);
        const checked_kernel checked(kernel);
        *out = s.evaluate_all(tokens);
        CHECK((g_calls > 0) == (g == ops::prefill_gemm::q8));
        CHECK(g_wrong == 0);
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
    MESSAGE(std::string(kernel.isa), " ", name, ": q8 vs f32 over ", tokens.size(),
            " positions, max |logit diff| ", diff);
    CHECK(decisive_disagree == 0);
}

TEST_CASE("prefill_gemm::q8 on the quantized parity models: every product exact, the f32 path's predictions" *
          doctest::timeout(300)) {
    if (!ops::detail::avx2_active()) FRUGAL_SKIP("no AVX2 on this CPU: SIMDe's emulation here is built for AVX2");
    FRUGAL_REQUIRE_PARITY_FIXTURES();
    // Every q8-capable weight type of the fixtures: Q8_0 (dense, and MoE + MLA), Q4_0 (repacked),
    // and the Q4_K / Q5_K / Q6_K matrices of the K-quant mixes.
    // Each kernel call is checked exactly (checked_chunk). The logits then follow the f32
    // path's (which parity_test holds to llama.cpp) up to float summation order, which can flip a
    // later activation's rounding (and, with MoE, a token's experts): as parity_test does for
    // these files, argmax must agree wherever the f32 path's margin exceeds 0.04.
    const std::pair<const char *, dtype> fixtures[] = { // each file and its main weight type
        {"tiny-qwen2-q8_0", dtype::q8_0},          {"tiny-llama-q4_0", dtype::q4_0},
        {"tiny-deepseek2-q8_0", dtype::q8_0},      {"tiny256-qwen2-q4_k_m", dtype::q4_k},
        {"tiny256-llama-q5_k_m", dtype::q5_k},     {"tiny256-deepseek3-q4_k_m", dtype::q4_k}};
    for (const q8::kernel * kernel : kernels_here())
        for (const auto & [name, main_type] : fixtures) {
            CAPTURE(std::string(kernel->isa));
            CAPTURE(name);
            if (kernel->takes(main_type)) check_parity_model(*kernel, name); // else f32: see the matmul case
        }
}
