// attention.cpp - blocked causal attention with an online softmax (flash-attention style).
//
// A task is one kv head and a block of query tokens: its rows are every (token, query head) pair
// that reads that kv head, so each K/V block loaded serves group × tokens rows (decode included;
// up to k_task_rows, multiplied k_block_rows at a time).
// Keys go by in blocks of k_block_keys (a decode step reading the cache directly, with a small
// running output: of k_direct_block_keys); per block
//   S = Q · Kᵀ                      [rows, bk]  (Q pre-scaled by scale · log2 e: S is in base 2)
//   m' = max(m, rowmax S), P = 2^(S − m'), l = l · 2^(m − m') + rowsum P, O = O · 2^(m − m')
//   O += P · V                      [rows, v_dim]
// and at the end out = O / l. Nothing of size n_kv is ever stored. When there are fewer tasks
// than threads (decode with few kv heads), each task's keys are also split into ranges whose
// (m, l, O) are merged at the end. An F16 (or Q8_0) cache is widened a block at a time into a per-thread
// F32 tile, [bk, head_dim] for K and [bk, v_dim] for V, which the block's rows then share; a
// task of few rows (decode) reads it directly instead (attention_kernels::direct_rows, per
// kernel set). Where the kernels take one (AVX-512), K is widened transposed instead,
// [head_dim, bk] with keys in lanes, so that the scores, like P · V, need no horizontal sums
// (pp512 at depth 3584 on Zen 5: attention 969 → 877 ms); an F32 cache's keys are transposed
// so too (DeepSeek's decompressed MLA heads, 192 wide, 512 tokens at depth 3584: 128 heads
// 730 → 665 ms, head-major 580 → 490).
// The products use register tiles: AVX-512 F where the CPU has it and the dims are multiples of
// 16 (attention_avx512_kernels.hpp; about 360 GFLOP/s with 2 threads on a Zen 5 at depth), else
// AVX2+FMA (~80 GFLOP/s per core measured on a Zen 3 for these shapes; Eigen, which this
// baseline-x86-64 file could only build for SSE2, reached ~25), else plain loops. In a prefill at
// depth 3584 on the 1.5B Qwen2's shapes (2 threads, Zen 3) the scores take about 40 % of the
// time, the products with V 45 % and the softmax steps the rest.
#include "ops/attention.hpp"

#include <omp.h>
#if defined(__x86_64__) || defined(__i386__)
#  include <immintrin.h>
#endif

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <utility>

#include "ops/attention_kernels.hpp"
#include "ops/gemm_pack.hpp"
#include "ops/quant.hpp"
#include "ops/simd_exp.hpp"
#include "util/error.hpp"
#include "util/profile.hpp"

// --- AVX2+FMA kernels (attention_tiles.hpp on 8 lanes) --------------------------------------------
// Every function carries the target attribute (the file is built for baseline x86-64) and is only
// called after the CPU check in pick_kernels(). Tiles of 3 rows: 12 accumulators with 3 q and 1 k
// (or 4 v and a broadcast) fill the 16 registers; 2-row score tiles and 4 × 16 output tiles
// measured ~30 % slower.
#if defined(__x86_64__) || defined(__i386__)
#  define FRUGAL_AVX2 __attribute__((target("avx2,fma,f16c")))
namespace frugal::ops::detail::attention_avx2 {
struct vec {
    using reg = __m256;
    static constexpr int lanes = 8;
    static constexpr int tile_rows = 3;
    static constexpr bool transposed_keys = false; // AVX2 has no fast transposing widen
    // attention_kernels::direct_rows. Measured with these kernels on a Zen 5 (no AVX2-only
    // machine at hand) at depth 4096, widened → direct: the 1.5B Qwen2's 28 layers, 2 tokens (12
    // rows) 10.0 → 8.8 ms, 3 (18) 13.3 → 13.1, 4 (24) 16.3 → 16.9; DeepSeek-V2's MLA (16 rows)
    // alike.
    static constexpr int64_t direct_rows = 16;
    // Q8_0 caches are always widened first here: with 3-row tiles the direct kernels widen each
    // key twice for a decode step's 6 rows (the 1.5B Qwen2's 28 layers at depth 4096, Zen 5 under
    // FRUGAL_MAX_CPU_ISA=avx2: 6.3 ms direct, 5.9 widened, F16 4.9; 2 tokens 11.6 against 9.2).
    static constexpr int64_t direct_rows_q8_0 = 0;
    FRUGAL_AVX2 static reg zero() { return _mm256_setzero_ps(); }
    FRUGAL_AVX2 static reg load(const float * p) { return _mm256_loadu_ps(p); }
    FRUGAL_AVX2 static void store(float * p, reg v) { _mm256_storeu_ps(p, v); }
    FRUGAL_AVX2 static reg set1(float x) { return _mm256_set1_ps(x); }
    FRUGAL_AVX2 static reg fmadd(reg a, reg b, reg c) { return _mm256_fmadd_ps(a, b, c); }
    FRUGAL_AVX2 static reg add(reg a, reg b) { return _mm256_add_ps(a, b); }
    FRUGAL_AVX2 static reg sub(reg a, reg b) { return _mm256_sub_ps(a, b); }
    FRUGAL_AVX2 static reg mul(reg a, reg b) { return _mm256_mul_ps(a, b); }
    FRUGAL_AVX2 static reg max(reg a, reg b) { return _mm256_max_ps(a, b); }
    FRUGAL_AVX2 static float first(reg v) { return _mm256_cvtss_f32(v); }
    FRUGAL_AVX2 static float hsum(reg v) {
        __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
    }
    FRUGAL_AVX2 static float hmax(reg v) {
        __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        s = _mm_max_ps(s, _mm_movehl_ps(s, s));
        return _mm_cvtss_f32(_mm_max_ss(s, _mm_movehdup_ps(s)));
    }
    FRUGAL_AVX2 static __m128 hsum4(const reg * a) {
        const __m256 s = _mm256_hadd_ps(_mm256_hadd_ps(a[0], a[1]), _mm256_hadd_ps(a[2], a[3])); // per 128-bit half
        return _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    }
    FRUGAL_AVX2 static reg exp2_nonpositive(reg x) { return detail::exp2_nonpositive(x); }
    FRUGAL_AVX2 static __m256i first_lanes(int64_t count) {
        return _mm256_cmpgt_epi32(_mm256_set1_epi32(int(count)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    }
    FRUGAL_AVX2 static reg load_tail(const float * p, int64_t count, float fill) {
        const __m256i mask = first_lanes(count);
        return _mm256_blendv_ps(_mm256_set1_ps(fill), _mm256_maskload_ps(p, mask), _mm256_castsi256_ps(mask));
    }
    FRUGAL_AVX2 static void store_tail(float * p, int64_t count, reg v) { _mm256_maskstore_ps(p, first_lanes(count), v); }
    FRUGAL_AVX2 static reg widen(const uint16_t * h) {
        return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i *>(h)));
    }
    FRUGAL_AVX2 static reg half(uint16_t d) { return _mm256_cvtph_ps(_mm_set1_epi16(short(d))); }
    FRUGAL_AVX2 static reg widen_q8(const int8_t * q, reg scale) { // exact in F32, as AVX-512's
        const __m256i quants = _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i *>(q)));
        return _mm256_mul_ps(_mm256_cvtepi32_ps(quants), scale);
    }
};
} // namespace frugal::ops::detail::attention_avx2
#  define FRUGAL_TILES_TARGET FRUGAL_AVX2
#  define FRUGAL_TILES_NS frugal::ops::detail::attention_avx2
#  include "ops/attention_tiles.hpp"
#  undef FRUGAL_TILES_TARGET
#  undef FRUGAL_TILES_NS
#  undef FRUGAL_AVX2
#endif

namespace frugal::ops {
namespace {

// 64 to 256 keys and 48 or 96 rows measured alike with keys as rows. With keys transposed, a
// tile's transposes serve more rows at 96: attention in a pp512 on Zen 5 (2 threads) 896-932 →
// 832-868 ms at depth 3584 and 72 → 70 ms from empty.
constexpr int64_t k_block_keys = 64;  // keys per block
static_assert(k_block_keys == detail::k_kt_keys && k_block_keys == gemm_pack::panel_cols,
              "a transposed key tile is one gemm_pack panel wide");
constexpr int64_t k_block_rows = 96;  // query rows (tokens × group heads) multiplied at a time
// Query rows per task at most, in sub-blocks of k_block_rows that share each key block's tiles
// (widened, transposed, rounded to BF16): 512 tokens at depth 3584 over 128 heads of 192/128
// (DeepSeek's decompressed MLA, F32, Zen 5, 2 threads), 96-row tasks 498 ms, 512-row 396-406;
// the 1.5B Qwen2's shapes (F16 cache, 6 heads per kv head) 2-4 % faster. Fewer when the tasks
// would not keep k_tasks_per_thread per thread.
constexpr int64_t k_task_rows = 512;
constexpr int64_t k_tasks_per_thread = 4;
constexpr int64_t k_line = 16;        // floats per cache line; per-thread scratch areas are padded to it

using detail::attention_kernels;

// --- portable kernels (any CPU, any dims) -------------------------------------------------------
void scores_portable(const float * q, int64_t rows, int64_t hd, const float * k, int64_t k_row, int64_t n, float * s,
                     int64_t ld_s) {
    for (int64_t r = 0; r < rows; ++r) {
        const float * qr = q + r * hd;
        for (int64_t j = 0; j < n; ++j) {
            const float * kj = k + j * k_row;
            float acc = 0;
#pragma omp simd reduction(+ : acc)
            for (int64_t d = 0; d < hd; ++d) acc += qr[d] * kj[d];
            s[r * ld_s + j] = acc;
        }
    }
}

void softmax_row_portable(float * s, int64_t visible, int64_t n, float & m, float & l, float * o, int64_t vd) {
    std::fill(s + visible, s + n, 0.f);
    float mx = m;
    for (int64_t j = 0; j < visible; ++j) mx = std::max(mx, s[j]);
    float sum = 0;
    for (int64_t j = 0; j < visible; ++j) {
        s[j] = std::exp2(s[j] - mx);
        sum += s[j];
    }
    const float alpha = std::exp2(m - mx); // 0 on the row's first block (m = -inf)
    l = l * alpha + sum;
    m = mx;
    if (alpha != 1.f)
        for (int64_t e = 0; e < vd; ++e) o[e] *= alpha;
}

void accumulate_portable(const float * p, int64_t ld_p, int64_t rows, const float * v, int64_t v_row, int64_t n,
                         float * o, int64_t vd) {
    for (int64_t r = 0; r < rows; ++r) {
        float * orow = o + r * vd;
        for (int64_t j = 0; j < n; ++j) {
            const float w = p[r * ld_p + j];
            const float * vj = v + j * v_row;
#pragma omp simd
            for (int64_t e = 0; e < vd; ++e) orow[e] += w * vj[e];
        }
    }
}

void widen_portable(const uint16_t * src, int64_t src_row, int64_t n, int64_t cols, float * dst) {
    for (int64_t j = 0; j < n; ++j)
        for (int64_t c = 0; c < cols; ++c) dst[j * cols + c] = fp16_to_fp32(src[j * src_row + c]);
}

void widen_q8_0_portable(detail::q8_0_cursor src, int64_t src_row, int64_t n, int64_t cols, float * dst) {
    for (int64_t j = 0; j < n; ++j)
        for (int64_t c = 0; c < cols; ++c) {
            const detail::q8_0_cursor at = src + (j * src_row + c);
            dst[j * cols + c] = fp16_to_fp32(at.block().d) * float(*at.quants());
        }
}

// No direct kernels (nullptr): an F16 or Q8_0 cache is always widened first.
constexpr attention_kernels k_portable{.dim_multiple = 1,
                                       .scores = scores_portable,
                                       .softmax_row = softmax_row_portable,
                                       .accumulate = accumulate_portable,
                                       .widen = widen_portable,
                                       .widen_q8_0 = widen_q8_0_portable,
                                       .scores_f16 = nullptr,
                                       .accumulate_f16 = nullptr,
                                       .scores_q8_0 = nullptr,
                                       .accumulate_q8_0 = nullptr,
                                       .scores_kt = nullptr,
                                       .scores_kt_bf16 = nullptr,
                                       .accumulate_bf16 = nullptr,
                                       .to_bf16_pairs = nullptr,
                                       .interleave_bf16 = nullptr,
                                       .direct_rows = 0,
                                       .direct_rows_q8_0 = 0};


std::atomic<const attention_kernels *> g_test_kernels{nullptr};

// The widest set whose dim_multiple divides both dims. The CPU checks and their test switch
// (detail::force_scalar: portable kernels) are the quant kernels' (ops/quant.hpp).
const attention_kernels & pick_kernels(const attention_params & p) {
    const auto fits = [&](const attention_kernels * k) {
        return k && p.head_dim % k->dim_multiple == 0 && p.v_dim % k->dim_multiple == 0;
    };
    if (const attention_kernels * k = g_test_kernels.load(std::memory_order_relaxed); fits(k)) return *k;
#if defined(__x86_64__) || defined(__i386__)
    if (detail::avx2_active()) {
        if (const attention_kernels * k = detail::avx512_attention_kernels(); fits(k)) return *k;
        if (fits(&detail::attention_avx2::kernels)) return detail::attention_avx2::kernels;
    }
#endif
    return k_portable;
}

// --- the blocked loop ---------------------------------------------------------------------------
struct problem {
    const attention_params & p;
    const attention_kernels & kern;
    const float * q;
    const void *k, *v;    // of p.kv_type
    int64_t pos0;
    int64_t group;        // query heads per kv head
    int64_t sub_tokens;   // tokens of a sub-block: k_block_rows rows (at least one token)
    int64_t k_row, v_row;   // elements between positions of k and v
    int64_t k_head, v_head; // elements between kv heads of k and v
    int64_t q_row, out_row; // elements between tokens of q and out
    float q_scale;        // scale · log2 e
    // F16 and Q8_0: V is the head of each K row (absorbed MLA), so the widened K tile serves as
    // V's too.
    bool v_in_k_tile;
    // The strides in bytes (whole Q8_0 blocks: attention() checks them), and a key's and a
    // value's row: computed once, as a decode step prefetches by them for every key.
    struct {
        int64_t k_row, v_row, k_head, v_head, key, value;
    } bytes;
    // Tasks of many rows copy keys into a transposed tile for kern.scores_kt (F16 and Q8_0 widened
    // on the way) where the K tile is not also V's, on a CPU with gemm_pack's AVX-512 transposes.
    bool transposed_keys;
    // attention_params::bf16_products, where this kernel set has the BF16 products: keys and
    // values are rounded into BF16 pair tiles (keys_bf16, values_bf16).
    bool bf16;

    bool f16() const { return p.kv_type == dtype::f16; }
    // F16 and Q8_0 caches are widened to F32 as they are read: into tiles, or by direct kernels.
    bool widened() const { return p.kv_type != dtype::f32; }
    // This cache type has kernels that read it as they multiply (attention_kernels::direct_rows).
    bool has_direct() const { return f16() ? bool(kern.scores_f16) : widened() && bool(kern.scores_q8_0); }
    // Where position j0 of kv head hk's keys (values) start, for prefetches.
    const std::byte * key_bytes(int64_t j0, int64_t hk) const {
        return static_cast<const std::byte *>(k) + j0 * bytes.k_row + hk * bytes.k_head;
    }
    const std::byte * value_bytes(int64_t j0, int64_t hk) const {
        return static_cast<const std::byte *>(v) + j0 * bytes.v_row + hk * bytes.v_head;
    }
    // s = qt · K[j0 .. j0 + n)ᵀ and o += P · V[j0 .. j0 + n) on the cache as stored (has_direct()).
    void direct_scores(const float * qt, int64_t rows, int64_t j0, int64_t n, int64_t hk, float * s,
                       int64_t ld_s) const {
        if (f16()) kern.scores_f16(qt, rows, p.head_dim, f16_keys(j0, hk), k_row, n, s, ld_s);
        else kern.scores_q8_0(qt, rows, p.head_dim, q8_0_at(k, k_row, k_head, j0, hk), k_row, n, s, ld_s);
    }
    void direct_accumulate(const float * s, int64_t ld_s, int64_t rows, int64_t j0, int64_t n, int64_t hk,
                           float * o) const {
        if (f16()) kern.accumulate_f16(s, ld_s, rows, f16_values(j0, hk), v_row, n, o, p.v_dim);
        else kern.accumulate_q8_0(s, ld_s, rows, q8_0_at(v, v_row, v_head, j0, hk), v_row, n, o, p.v_dim);
    }
    // Keys [j0, j0 + n) of kv head hk as F32 rows: the cache itself, or widened into tile.
    // Returns the rows and sets row to the floats between them.
    const float * keys(int64_t j0, int64_t n, int64_t hk, float * tile, int64_t & row) const {
        return rows_of(k, k_row, k_head, p.head_dim, j0, n, hk, tile, row);
    }
    const float * values(int64_t j0, int64_t n, int64_t hk, float * tile, const float * k_tile, int64_t & row) const {
        if (v_in_k_tile) {
            row = p.head_dim;
            return k_tile;
        }
        return rows_of(v, v_row, v_head, p.v_dim, j0, n, hk, tile, row);
    }

    // Keys [j0, j0 + n) (n <= k_kt_keys) of kv head hk, as F32 in kt [head_dim][k_kt_keys] with
    // keys in lanes: 16 keys at a time through gemm_pack's AVX-512 transposes (F32 and F16: a
    // partial last group from a zero-padded copy in pad, so nothing past the cache's rows is
    // read; Q8_0: widened into pad [16, head_dim] first; keys past the cache's rows are zeros).
    // False where the CPU lacks the transposes (transposed_keys rules that out; the caller then
    // takes the keys as rows).
    bool keys_transposed(int64_t j0, int64_t n, int64_t hk, float * kt, float * pad) const {
        constexpr int64_t per_group = gemm_pack::group_rows;
        const int64_t hd = p.head_dim;
        if (!widened()) { // F32 (DeepSeek's decompressed MLA keys, head_dim 192)
            for (int64_t g = 0; g < n; g += per_group) {
                const auto [rows, row] = whole_group(static_cast<const float *>(k) + (j0 + g) * k_row + hk * k_head,
                                                     std::min(per_group, n - g), pad);
                gemm_pack::transpose_group(reinterpret_cast<const std::byte *>(rows), row * int64_t(sizeof(float)),
                                           hd, kt + g);
            }
            return true;
        }
        if (!f16()) { // Q8_0 (512 tokens at depth 3584, 2 layers of the 1.5B Qwen2: 70 ms as rows, 59 so, as F16)
            for (int64_t g = 0; g < n; g += per_group) {
                const int64_t count = std::min(per_group, n - g);
                kern.widen_q8_0(q8_0_at(k, k_row, k_head, j0 + g, hk), k_row, count, hd, pad);
                std::fill(pad + count * hd, pad + per_group * hd, 0.f);
                gemm_pack::transpose_group(reinterpret_cast<const std::byte *>(pad), hd * int64_t(sizeof(float)), hd,
                                           kt + g);
            }
            return true;
        }
        for (int64_t g = 0; g < n; g += per_group) {
            const auto [rows, row] = whole_group(f16_keys(j0 + g, hk), std::min(per_group, n - g), pad);
            if (!gemm_pack::transpose_group_f16(reinterpret_cast<const std::byte *>(rows),
                                                row * int64_t(sizeof(uint16_t)), hd, kt + g))
                return false;
        }
        return true;
    }

    // Keys [j0, j0 + n) (n <= k_kt_keys) of kv head hk (an F32 or F16 cache) as BF16 pairs in kt
    // [head_dim / 2][k_kt_keys] with keys in lanes: 16 keys at a time rounded into pad [16,
    // head_dim / 2] (zero rows past n), then transposed as words. pad's other half takes an F16
    // key widened to F32 (exactly) before its rounding.
    void keys_bf16(int64_t j0, int64_t n, int64_t hk, uint32_t * kt, uint32_t * pad) const {
        constexpr int64_t per_group = gemm_pack::group_rows;
        const int64_t words = p.head_dim / 2;
        float * wide = reinterpret_cast<float *>(pad + per_group * words); // [head_dim]
        int64_t stride = 0; // rows_of's, unused for one row
        for (int64_t g = 0; g < n; g += per_group) {
            const int64_t count = std::min(per_group, n - g);
            for (int64_t j = 0; j < count; ++j)
                kern.to_bf16_pairs(rows_of(k, k_row, k_head, p.head_dim, j0 + g + j, 1, hk, wide, stride),
                                   p.head_dim, pad + j * words);
            std::fill(pad + count * words, pad + per_group * words, 0u);
            gemm_pack::transpose_group(reinterpret_cast<const std::byte *>(pad), words * int64_t(sizeof(uint32_t)),
                                       words, kt + g);
        }
    }
    // Values [j0, j0 + n) of kv head hk (an F32 or F16 cache) as BF16 pairs of keys in vp
    // [ceil(n / 2), v_dim]. An odd n's last pair repeats its key, which P's zero for the missing
    // one cancels. pad takes two F16 rows widened to F32.
    void values_bf16(int64_t j0, int64_t n, int64_t hk, uint32_t * vp, float * pad) const {
        const int64_t vd = p.v_dim;
        int64_t stride = 0; // rows_of's, unused for one row
        const auto row = [&](int64_t j, float * wide) {
            return rows_of(v, v_row, v_head, vd, j0 + j, 1, hk, wide, stride);
        };
        for (int64_t j = 0; j < n; j += 2)
            kern.interleave_bf16(row(j, pad), row(std::min(j + 1, n - 1), pad + vd), vd, vp + j / 2 * vd);
    }

private:
    // A group of `count` key rows (k_row elements apart, F32 or F16 as stored) as the transposes
    // read 16: the rows themselves when the group is whole, else a copy in pad zero-filled past
    // them, so that nothing past the cache's rows is read. Returns the rows and their stride.
    template <class T>
    std::pair<const T *, int64_t> whole_group(const T * rows, int64_t count, float * pad) const {
        constexpr int64_t per_group = gemm_pack::group_rows;
        if (count == per_group) return {rows, k_row};
        const int64_t hd = p.head_dim;
        T * copy = reinterpret_cast<T *>(pad);
        std::fill_n(copy, per_group * hd, T(0));
        for (int64_t j = 0; j < count; ++j) std::copy_n(rows + j * k_row, hd, copy + j * hd);
        return {copy, hd};
    }

    // Keys from position j0 of kv head hk in an F16 cache, as stored (rows k_row apart).
    const uint16_t * f16_keys(int64_t j0, int64_t hk) const { return f16_at(k, k_row, k_head, j0, hk); }
    const uint16_t * f16_values(int64_t j0, int64_t hk) const { return f16_at(v, v_row, v_head, j0, hk); }
    static const uint16_t * f16_at(const void * base, int64_t stride, int64_t head, int64_t j0, int64_t hk) {
        return static_cast<const uint16_t *>(base) + j0 * stride + hk * head;
    }
    static detail::q8_0_cursor q8_0_at(const void * base, int64_t stride, int64_t head, int64_t j0, int64_t hk) {
        return {static_cast<const block_q8_0 *>(base), j0 * stride + hk * head};
    }
    const float * rows_of(const void * base, int64_t stride, int64_t head, int64_t dim, int64_t j0, int64_t n,
                          int64_t hk, float * tile, int64_t & row) const {
        if (!widened()) {
            row = stride;
            return static_cast<const float *>(base) + j0 * stride + hk * head;
        }
        if (f16()) kern.widen(f16_at(base, stride, head, j0, hk), stride, n, dim, tile);
        else kern.widen_q8_0(q8_0_at(base, stride, head, j0, hk), stride, n, dim, tile);
        row = dim;
        return tile;
    }
};

// Running state of up to rows_max query rows: o [rows_max, vd] unnormalised output, m [rows_max]
// max score so far (base 2), l [rows_max] Σ 2^(s − m); laid out in that order from base.
struct state {
    float *o, *m, *l;
};

state state_at(float * base, int64_t rows_max, int64_t vd) {
    return {base, base + rows_max * vd, base + rows_max * (vd + 1)};
}

// Per-thread working space: qt [rows, head_dim], s [sub-block rows, k_block_keys]; for an F16 or
// Q8_0 cache the widened tiles k [k_block_keys, head_dim] (or, transposed, [head_dim,
// k_block_keys]) and v [k_block_keys, v_dim], and pad [16, head_dim] floats for a group of keys to
// transpose.
struct workspace {
    float *qt, *s, *k, *v;
    float * pad;
    // BF16 products: the rows' queries [rows, head_dim / 2] and a sub-block's P [rows, k_block_keys
    // / 2] as BF16 pairs (k, v and pad then hold the key and value pair tiles and a group of keys'
    // pairs).
    uint32_t *qp, *pp;
};

// n rows of row_bytes each, `stride` bytes apart, into the cache hierarchy: into L1 (Locality 3)
// or L2 (1). A decode step reads the whole cache once, at a few arithmetic operations per byte,
// and the hardware prefetchers alone left it waiting on memory.
template <int Locality = 3>
void prefetch_rows(const std::byte * rows, int64_t stride, int64_t n, int64_t row_bytes) {
    for (int64_t j = 0; j < n; ++j)
        for (int64_t c = 0; c < row_bytes; c += 64) __builtin_prefetch(rows + j * stride + c, 0, Locality); // lines
}

// A decode step (the direct path) goes through the keys in blocks of this many, not
// k_block_keys: the keys' and the values' rows then alternate in 4 KiB runs, where 16 KiB runs
// left the core waiting on memory. The 1.5B Qwen2's 28 layers at depth 4096 (6 rows per kv head,
// 2 threads, Zen 5, a kernel-only bench): 5.4-6.0 → 3.6-4.0 ms a token; at 16384 24.4 → 16.5; the
// Llama-8B shape (4 rows, 8 kv heads) 19-20 → 14 ms; 32 keys measured between the two, 8 no better
// than 64; at depth 512, where the cache sits in L3, 0.35 → 0.39 ms. The software prefetches
// below helped at either size, and without them 16 still beat 64 (3.8-4.1 against 5.6-6.2 ms).
constexpr int64_t k_direct_block_keys = 16;
// ... unless the rows' running output (rows × v_dim floats, read and written once per block) is
// larger than this: DeepSeek's absorbed MLA (16 rows × 512: 32 KiB) spent more on it than on
// its keys with 16-key blocks, and runs at depth 4096 (6 layers) in 2.45-2.94 ms a token with 64
// against 3.37-3.75 with 16. The 1.5B Qwen2's 3 tokens at depth (18 rows × 128: 9 KiB) keep 16
// (8.8 against 9.4 ms).
constexpr int64_t k_direct_state_bytes = 16 << 10;

// Direct blocks between the one a decode step works on and the one whose keys it asks into L2
// meanwhile, a key's row then the values' row one block nearer (the next block's keys and this
// block's values go into L1). Measured with 64-key blocks (the 1.5B Qwen2's 28 layers' attention
// at depth 4096, Zen 5, 2 threads, alternating runs): 6.3-6.9 ms a token with the L1 requests
// alone, 5.2-6.0 with these; with 16-key blocks, 2 to 16 blocks ahead measured alike.
constexpr int64_t k_l2_blocks_ahead = 4;

// Rows (t, g), t in [t0, t1), g < group, of kv head hk, over key blocks [kb0, kb1); row r = (t − t0) · group + g.
// Each key block is made ready once (widened, transposed or rounded into tiles, or read where it
// is: direct kernels, F32 rows), then multiplied by the rows in sub-blocks of pr.sub_tokens
// tokens, each only as far as its own causal limit.
void attend(const problem & pr, int64_t hk, int64_t t0, int64_t t1, int64_t kb0, int64_t kb1, state st,
            const workspace & ws) {
    float * qt = ws.qt;
    float * s = ws.s;
    const attention_params & p = pr.p;
    const int64_t hd = p.head_dim, vd = p.v_dim;
    const int64_t rows = (t1 - t0) * pr.group;
    // qt[(t − t0) · group + g] = q[t, hk · group + g] · q_scale: a token's group heads are adjacent.   [rows, hd]
    for (int64_t t = t0; t < t1; ++t) {
        const float * src = pr.q + t * pr.q_row + hk * pr.group * hd;
        float * dst = qt + (t - t0) * pr.group * hd;
#pragma omp simd
        for (int64_t i = 0; i < pr.group * hd; ++i) dst[i] = src[i] * pr.q_scale;
    }
    if (pr.bf16) pr.kern.to_bf16_pairs(qt, rows * hd, ws.qp); // [rows, hd / 2] pairs
    std::fill(st.o, st.o + rows * vd, 0.f);
    std::fill(st.m, st.m + rows, -std::numeric_limits<float>::infinity());
    std::fill(st.l, st.l + rows, 0.f);

    const int64_t limit = pr.pos0 + t1; // keys past every row's causal limit are never read
    const bool direct = pr.has_direct() && rows <= (pr.f16() ? pr.kern.direct_rows : pr.kern.direct_rows_q8_0);
    const bool transposed = !direct && pr.transposed_keys && !pr.bf16;
    const bool small_state = rows * vd * int64_t(sizeof(float)) <= k_direct_state_bytes;
    const int64_t bk = direct && small_state ? k_direct_block_keys : k_block_keys; // keys per block here
    auto * kt_bf16 = reinterpret_cast<uint32_t *>(ws.k); // BF16 tiles: keys [hd / 2, bk], values [bk / 2, vd]
    auto * vp_bf16 = reinterpret_cast<uint32_t *>(ws.v);
    const int64_t j_end = std::min(kb1 * k_block_keys, limit);
    for (int64_t j0 = kb0 * k_block_keys; j0 < j_end; j0 += bk) {
        const int64_t n = std::min(bk, j_end - j0);
        // The block's keys and values as the products read them.
        int64_t k_row = 0, v_row = 0;
        const float *keys = nullptr, *values = nullptr;
        bool keys_in_lanes = false;
        if (direct) {
            // This block's values and the next block's keys are asked for ahead of their use,
            // and keys k_l2_blocks_ahead blocks on (values one block less) into L2.
            prefetch_rows(pr.value_bytes(j0, hk), pr.bytes.v_row, n, pr.bytes.value);
            if (const int64_t next = std::min(bk, limit - j0 - n); next > 0)
                prefetch_rows(pr.key_bytes(j0 + n, hk), pr.bytes.k_row, next, pr.bytes.key);
            const int64_t far0 = j0 + k_l2_blocks_ahead * bk;
            for (int64_t j = far0; j < std::min(far0 + bk, limit); ++j) { // a key's row, then a value's
                prefetch_rows<1>(pr.key_bytes(j, hk), 0, 1, pr.bytes.key);
                prefetch_rows<1>(pr.value_bytes(j - bk, hk), 0, 1, pr.bytes.value);
            }
        } else if (pr.bf16) {
            pr.keys_bf16(j0, n, hk, kt_bf16, reinterpret_cast<uint32_t *>(ws.pad));
            pr.values_bf16(j0, n, hk, vp_bf16, ws.pad);
        } else {
            keys_in_lanes = transposed && pr.keys_transposed(j0, n, hk, ws.k, ws.pad);
            if (!keys_in_lanes) keys = pr.keys(j0, n, hk, ws.k, k_row);
            values = pr.values(j0, n, hk, ws.v, keys, v_row);
        }
        for (int64_t u0 = t0; u0 < t1; u0 += pr.sub_tokens) {
            const int64_t u1 = std::min(t1, u0 + pr.sub_tokens);
            const int64_t nu = std::min(n, pr.pos0 + u1 - j0); // keys any row of the sub-block sees
            if (nu <= 0) continue;
            const int64_t r0 = (u0 - t0) * pr.group, sub_rows = (u1 - u0) * pr.group;
            const float * q_sub = qt + r0 * hd;
            float * o = st.o + r0 * vd;
            // s = qt · K[j0 .. j0 + nu)ᵀ   [sub_rows, nu]
            if (direct) pr.direct_scores(q_sub, sub_rows, j0, nu, hk, s, k_block_keys);
            else if (pr.bf16) pr.kern.scores_kt_bf16(ws.qp + r0 * hd / 2, sub_rows, hd, kt_bf16, nu, s, k_block_keys);
            else if (keys_in_lanes) pr.kern.scores_kt(q_sub, sub_rows, hd, ws.k, nu, s, k_block_keys);
            else pr.kern.scores(q_sub, sub_rows, hd, keys, k_row, nu, s, k_block_keys);
            // online softmax: s becomes P = 2^(s − m_new), 0 where masked   [sub_rows, nu]
            for (int64_t r = 0; r < sub_rows; ++r) {
                float * sr = s + r * k_block_keys;
                const int64_t visible = std::clamp(pr.pos0 + u0 + r / pr.group + 1 - j0, int64_t(0), nu);
                if (visible == 0)
                    std::fill(sr, sr + nu, 0.f);
                else
                    pr.kern.softmax_row(sr, visible, nu, st.m[r0 + r], st.l[r0 + r], o + r * vd, vd);
            }
            // o += P · V[j0 .. j0 + nu)   [sub_rows, vd]
            if (direct) {
                pr.direct_accumulate(s, k_block_keys, sub_rows, j0, nu, hk, o);
            } else if (pr.bf16) {
                constexpr int64_t pair_row = k_block_keys / 2;
                for (int64_t r = 0; r < sub_rows; ++r) { // P as pairs of keys   [sub_rows, ceil(nu / 2)]
                    float * sr = s + r * k_block_keys;
                    if (nu % 2) sr[nu] = 0.f; // the odd last pair's other key
                    pr.kern.to_bf16_pairs(sr, nu + nu % 2, ws.pp + r * pair_row);
                }
                pr.kern.accumulate_bf16(ws.pp, pair_row, sub_rows, vp_bf16, nu, o, vd);
            } else {
                pr.kern.accumulate(s, k_block_keys, sub_rows, values, v_row, nu, o, vd);
            }
        }
    }
}

// out[t, hk · group + g] = o[r] / l[r] for the rows of attend().   [rows, vd] -> out
void write_rows(const problem & pr, int64_t hk, int64_t t0, int64_t t1, const state & st, float * out) {
    const int64_t vd = pr.p.v_dim;
    for (int64_t t = t0; t < t1; ++t)
        for (int64_t g = 0; g < pr.group; ++g) {
            const int64_t r = (t - t0) * pr.group + g;
            const float inv = 1.f / st.l[r];
            const float * src = st.o + r * vd;
            float * dst = out + t * pr.out_row + (hk * pr.group + g) * vd;
#pragma omp simd
            for (int64_t e = 0; e < vd; ++e) dst[e] = src[e] * inv;
        }
}

// Folds the states of a task's key ranges (n_parts of them, `stride` floats apart from base) into
// the first: m = max m_s, l = Σ l_s · 2^(m_s − m), o = Σ o_s · 2^(m_s − m). The range holding key
// 0 gives every row a finite m; a range a row cannot see has m = -inf and weighs 0.
state merge_ranges(float * base, int64_t stride, int64_t n_parts, int64_t rows_max, int64_t rows, int64_t vd) {
    const state total = state_at(base, rows_max, vd);
    for (int64_t r = 0; r < rows; ++r) {
        float mx = total.m[r];
        for (int64_t i = 1; i < n_parts; ++i) mx = std::max(mx, state_at(base + i * stride, rows_max, vd).m[r]);
        float * o = total.o + r * vd;
        const float a0 = std::exp2(total.m[r] - mx);
        total.l[r] *= a0;
        for (int64_t e = 0; e < vd; ++e) o[e] *= a0;
        for (int64_t i = 1; i < n_parts; ++i) {
            const state part = state_at(base + i * stride, rows_max, vd);
            const float a = std::exp2(part.m[r] - mx);
            total.l[r] += part.l[r] * a;
            const float * po = part.o + r * vd;
#pragma omp simd
            for (int64_t e = 0; e < vd; ++e) o[e] += po[e] * a;
        }
    }
    return total;
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

} // namespace

void attention(const attention_params & p, const float * q, int64_t n_tokens, int64_t pos0, const void * k,
               const void * v, float * out, std::vector<float> & scratch, int n_threads) {
    const profile::scope timed(profile::op::attention);
    if (p.kv_type != dtype::f32 && p.kv_type != dtype::f16 && p.kv_type != dtype::q8_0)
        throw_error(status::invalid_argument, "attention: KV cache type {} is not f32, f16 or q8_0",
                    dtype_name(p.kv_type));
    if (n_tokens <= 0) return;
    const int64_t n_kv_total = pos0 + n_tokens;
    const int threads = n_threads > 0 ? n_threads : omp_get_max_threads();
    const int64_t k_row = p.k_stride ? p.k_stride : p.n_head_kv * p.head_dim;
    const int64_t v_row = p.v_stride ? p.v_stride : p.n_head_kv * p.v_dim;
    const int64_t k_head = p.k_head_stride ? p.k_head_stride : p.head_dim;
    const int64_t v_head = p.v_head_stride ? p.v_head_stride : p.v_dim;
    if (p.kv_type == dtype::q8_0)
        for (const auto & [what, n] : {std::pair{"head_dim", p.head_dim}, {"v_dim", p.v_dim}, {"k_stride", k_row},
                                       {"v_stride", v_row}, {"k_head_stride", k_head}, {"v_head_stride", v_head}})
            if (n % k_qk != 0)
                throw_error(status::invalid_argument, "attention: a Q8_0 cache needs whole blocks of {}, but {} is {}",
                            k_qk, what, n);
    const attention_kernels & kern = pick_kernels(p);
    const bool v_in_k_tile =
        p.kv_type != dtype::f32 && v == k && v_row == k_row && p.n_head_kv == 1 && p.v_dim <= p.head_dim;
    const problem pr{.p = p,
                     .kern = kern,
                     .q = q,
                     .k = k,
                     .v = v,
                     .pos0 = pos0,
                     .group = p.n_head / p.n_head_kv,
                     .sub_tokens = std::max<int64_t>(1, k_block_rows / (p.n_head / p.n_head_kv)),
                     .k_row = k_row,
                     .v_row = v_row,
                     .k_head = k_head,
                     .v_head = v_head,
                     .q_row = p.q_stride ? p.q_stride : p.n_head * p.head_dim,
                     .out_row = p.out_stride ? p.out_stride : p.n_head * p.v_dim,
                     .q_scale = float(double(p.scale) * 1.4426950408889634), // log2 e
                     .v_in_k_tile = v_in_k_tile,
                     .bytes = {.k_row = row_bytes(p.kv_type, k_row),
                               .v_row = row_bytes(p.kv_type, v_row),
                               .k_head = row_bytes(p.kv_type, k_head),
                               .v_head = row_bytes(p.kv_type, v_head),
                               .key = row_bytes(p.kv_type, p.head_dim),
                               .value = row_bytes(p.kv_type, p.v_dim)},
                     .transposed_keys = kern.scores_kt && !v_in_k_tile && detail::avx512f_supported(),
                     .bf16 = p.bf16_products && p.kv_type != dtype::q8_0 && kern.scores_kt_bf16};

    // Tasks: (query block, kv head), later query blocks (more keys) first for the dynamic schedule.
    // Tokens per task: whole sub-blocks, up to k_task_rows rows, fewer where that leaves under
    // k_tasks_per_thread tasks a thread.
    const int64_t sub_tokens = pr.sub_tokens;
    const int64_t most_tokens = std::max<int64_t>(1, k_task_rows / pr.group / sub_tokens) * sub_tokens;
    const int64_t balanced_tokens =
        round_up(ceil_div(n_tokens, ceil_div(k_tasks_per_thread * threads, p.n_head_kv)), sub_tokens);
    const int64_t q_block = std::min(n_tokens, std::min(most_tokens, balanced_tokens));
    const int64_t rows_max = q_block * pr.group;
    const int64_t sub_rows_max = std::min(q_block, sub_tokens) * pr.group;
    const int64_t n_qblocks = ceil_div(n_tokens, q_block);
    const int64_t n_tasks = n_qblocks * p.n_head_kv;
    // Tiny problems (a decode step of a small model) run on the calling thread.
    const bool parallel = n_tokens * p.n_head * n_kv_total * p.head_dim >= (int64_t(1) << 15);
    // Too few tasks for the threads: split every task's keys into ranges, merged afterwards.
    const int64_t max_split = n_tasks < threads ? ceil_div(threads, n_tasks) : 1;
    const int64_t n_split = parallel ? std::min(max_split, ceil_div(n_kv_total, k_block_keys)) : 1;

    // Scratch: per thread a workspace and a state; for key splits, a state per (task, split).
    // Sized for max_split whatever the depth, so a reused scratch stops allocating after the
    // first call.
    const int64_t state_floats = round_up(rows_max * (p.v_dim + 2), k_line);
    const int64_t k_tile_floats = pr.widened() || pr.transposed_keys || pr.bf16 ? k_block_keys * p.head_dim : 0;
    const int64_t v_tile_floats = pr.widened() && !pr.v_in_k_tile ? k_block_keys * p.v_dim
                                  : pr.bf16                       ? k_block_keys / 2 * p.v_dim
                                                                  : 0;
    // pad: [16, head_dim] floats (F32 or widened Q8_0 keys to transpose), or as many F16 values;
    // BF16 products: [16, head_dim / 2] pairs, then an F16 key or two values widened.
    const int64_t pad_floats = pr.bf16 ? gemm_pack::group_rows * p.head_dim / 2 + std::max(p.head_dim, 2 * p.v_dim)
                               : pr.transposed_keys ? gemm_pack::group_rows * p.head_dim / (pr.f16() ? 2 : 1)
                                                    : 0;
    const int64_t pair_words = pr.bf16 ? (rows_max * p.head_dim + sub_rows_max * k_block_keys) / 2 : 0; // qp, pp
    const int64_t thread_floats = round_up(rows_max * p.head_dim + sub_rows_max * k_block_keys + k_tile_floats +
                                               v_tile_floats + pad_floats + pair_words,
                                           k_line) +
                                  state_floats;
    const int64_t split_floats = max_split > 1 ? n_tasks * max_split * state_floats : 0;
    scratch.resize(size_t(threads * thread_floats + split_floats));
    struct task {
        int64_t hk, t0, t1; // kv head, tokens [t0, t1)
    };
    const auto task_at = [&](int64_t i) {
        const int64_t t0 = (n_qblocks - 1 - i / p.n_head_kv) * q_block;
        return task{i % p.n_head_kv, t0, std::min(n_tokens, t0 + q_block)};
    };

#pragma omp parallel num_threads(threads) if (parallel)
    {
        float * mine = scratch.data() + omp_get_thread_num() * thread_floats;
        workspace ws{.qt = mine, .s = mine + rows_max * p.head_dim, .k = nullptr, .v = nullptr, .pad = nullptr,
                     .qp = nullptr, .pp = nullptr};
        ws.k = ws.s + sub_rows_max * k_block_keys;
        ws.v = ws.k + k_tile_floats;
        ws.pad = ws.v + v_tile_floats;
        ws.qp = reinterpret_cast<uint32_t *>(ws.pad + pad_floats);
        ws.pp = ws.qp + rows_max * p.head_dim / 2;
        float * own_state = mine + thread_floats - state_floats;
#pragma omp for schedule(dynamic, 1)
        for (int64_t i = 0; i < n_tasks * n_split; ++i) {
            const auto [hk, t0, t1] = task_at(i / n_split);
            const int64_t n_kb = ceil_div(pos0 + t1, k_block_keys), split = i % n_split;
            if (n_split == 1) {
                const state st = state_at(own_state, rows_max, p.v_dim);
                attend(pr, hk, t0, t1, 0, n_kb, st, ws);
                write_rows(pr, hk, t0, t1, st, out);
            } else {
                float * slot = scratch.data() + threads * thread_floats + i * state_floats;
                attend(pr, hk, t0, t1, split * n_kb / n_split, (split + 1) * n_kb / n_split,
                       state_at(slot, rows_max, p.v_dim), ws);
            }
        }
        if (n_split > 1) {
#pragma omp for schedule(static)
            for (int64_t i = 0; i < n_tasks; ++i) {
                const auto [hk, t0, t1] = task_at(i);
                float * slots = scratch.data() + threads * thread_floats + i * n_split * state_floats;
                const state total = merge_ranges(slots, state_floats, n_split, rows_max, (t1 - t0) * pr.group, p.v_dim);
                write_rows(pr, hk, t0, t1, total, out);
            }
        }
    }
}

bool bf16_products_available() {
#if defined(__x86_64__) || defined(__i386__)
    const attention_kernels * k = detail::avx512_attention_kernels();
    return detail::avx2_active() && k && k->scores_kt_bf16;
#else
    return false;
#endif
}

namespace detail {
void set_attention_kernels_for_tests(const attention_kernels * k) { g_test_kernels.store(k, std::memory_order_relaxed); }
} // namespace detail

} // namespace frugal::ops
