#include "ops/matmul.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <optional>
#include <span>
#include <string_view>

#include "util/profile.hpp"
#include "ops/amx_gemm.hpp"
#include "ops/dnnl_compat.hpp"
#include "ops/gemm_pack.hpp"
#include "ops/q8_gemm.hpp"
#include "ops/quant.hpp"
#include "ops/quant_kernels.hpp"
#include "util/buffer.hpp"
#include "util/error.hpp"
#include "util/log.hpp"

namespace frugal::ops {

// A oneDNN matmul and the weight memory it reads.
struct gemm_plan {
    dnnl::matmul prim;
    dnnl::memory::desc weights;
    int64_t k_padded = 0;            // panels: K padded to the layout's blocks
    dnnl::memory::desc scratchpad{}; // panels: the caller's scratchpad (one per running thread)
};

namespace {

using dims = dnnl::memory::dims;
using dt = dnnl::memory::data_type;

// oneDNN runs within FRUGAL_MAX_CPU_ISA as frugal's own kernels do (ops/quant.hpp). Its ISA can
// only be capped before its first use latches it: everything here that reaches oneDNN (a
// context's primitives, the ISA queries) calls this first.
void cap_onednn_isa() {
    static const bool capped = [] {
        const detail::cpu_isa cap = detail::max_cpu_isa();
        if (cap == detail::cpu_isa::avx512) return false;
        try {
            dnnl::set_max_cpu_isa(cap == detail::cpu_isa::avx2_vnni ? dnnl::cpu_isa::avx2_vnni
                                  : cap == detail::cpu_isa::avx2    ? dnnl::cpu_isa::avx2
                                                                    : dnnl::cpu_isa::sse41);
            return true;
        } catch (const dnnl::error & e) {
            FRUGAL_LOG_WARN("FRUGAL_MAX_CPU_ISA: oneDNN was already in use and keeps its own ISA ({})", e.what());
            return false;
        }
    }();
    (void)capped;
}

// Rows of weight dequantized per slab on the prefill path: big enough to keep the GEMM
// efficient, small enough (with K = 8960, 1.1 MiB per 32 rows) to stay in L3. Measured on Zen 5,
// 2 threads, an F16 [1536, 8960] weight against 512 rows: 345 GFLOP/s with 4 MiB slabs (14
// GEMMs of 110 rows), 408 with 8 MiB, 404 with 16; the 1.5B F16 model's pp512 +9 %.
constexpr int64_t k_slab_bytes = 8 << 20;

// Rows per slab for n weight rows of row_bytes each: at most k_slab_bytes (at least 16 rows),
// split evenly, so no slab is a sliver (a GEMM of a handful of rows runs far below rate).
int64_t balanced_slab_rows(int64_t n, int64_t row_bytes) {
    const int64_t most = std::clamp<int64_t>(k_slab_bytes / row_bytes, 16, n);
    const int64_t slabs = (n + most - 1) / most;
    return (n + slabs - 1) / slabs;
}

// Runs with `n` OpenMP threads in this thread's parallel regions (oneDNN's OMP runtime reads
// the same setting), restoring the caller's value afterwards.
class omp_threads_scope {
public:
    explicit omp_threads_scope(int n) : saved_(omp_get_max_threads()) {
        if (n > 0) omp_set_num_threads(n);
    }
    ~omp_threads_scope() { omp_set_num_threads(saved_); }

private:
    int saved_;
};

// Inner length of the prefill GEMM for weight type t and rows of k. Q4_1's and Q5_1's block
// offsets m meet Q8_1's stored block sums s (m·s is the product the small-batch kernels and
// llama.cpp take), not the rounded activations: those products ride along as one extra column
// per block.
int64_t gemm_k(dtype t, int64_t k) { return has_block_offsets(t) ? k + k / k_qk : k; }

// x[n] rounded through the activation format of weight type t (see quant.hpp): the values the
// small-batch kernels and llama.cpp actually multiply with, gemm_k(t, n) of them. Running the
// wide-batch GEMM on these keeps prefill and decode, and frugal and llama.cpp, numerically in step.
void round_activation(dtype t, const float * x, float * out, int64_t n, std::vector<std::byte> & buf) {
    buf.resize(activation_bytes(t, n));
    quantize_activation(t, x, buf.data(), n);
    switch (t) {
    case dtype::f32: std::copy(x, x + n, out); break;
    case dtype::f16: case dtype::bf16: dequantize_row(t, buf.data(), out, n); break;
    case dtype::q8_0: case dtype::q4_0: case dtype::q4_0_repacked: case dtype::q5_0: case dtype::q5_0_repacked:
    case dtype::iq4_nl: case dtype::iq4_nl_repacked:
        dequantize_row(dtype::q8_0, buf.data(), out, n);
        break;
    case dtype::q4_1: case dtype::q4_1_repacked: case dtype::q5_1: case dtype::q5_1_repacked: {
        const auto * blocks = reinterpret_cast<const block_q8_1 *>(buf.data());
        for (int64_t b = 0; b < n / k_qk; ++b) {
            const float d = fp16_to_fp32(blocks[b].d);
            for (int64_t i = 0; i < k_qk; ++i) out[b * k_qk + i] = d * float(blocks[b].qs[i]);
            out[n + b] = fp16_to_fp32(blocks[b].s);
        }
        break;
    }
    case dtype::q2_k: case dtype::q3_k: case dtype::q4_k: case dtype::q5_k: case dtype::q6_k: case dtype::iq4_xs: {
        const auto * blocks = reinterpret_cast<const block_q8_k *>(buf.data());
        for (int64_t b = 0; b < n / k_qk_k; ++b)
            for (int64_t i = 0; i < k_qk_k; ++i) out[b * k_qk_k + i] = blocks[b].d * float(blocks[b].qs[i]);
        break;
    }
    }
}

// Row r of w as the prefill GEMM multiplies it (see gemm_k): for Q4_1 and Q5_1 (either layout),
// d·q alone (dequantized from a copy with m zeroed) followed by each block's m.
void dequantize_for_gemm(const raw_view & w, int64_t r, float * out, std::vector<std::byte> & buf) {
    const int64_t k = w.row_size();
    if (!has_block_offsets(w.type)) {
        dequantize_row(w.type, w.row(r), out, k);
        return;
    }
    buf.assign(w.row(r), w.row(r) + w.row_stride());
    const auto move_offsets = [&]<class Block>(Block * blocks) {
        for (int64_t b = 0; b < k / k_qk; ++b) {
            out[k + b] = fp16_to_fp32(blocks[b].m);
            blocks[b].m = 0;
        }
    };
    if (detail::repacked_has_mins(w.type)) { // the row's fp16 offsets, in one array
        std::byte * mins = buf.data() + detail::repacked_mins_offset(w.type, k / k_qk);
        for (int64_t b = 0; b < k / k_qk; ++b) {
            uint16_t m;
            std::memcpy(&m, mins + b * int64_t(sizeof m), sizeof m);
            out[k + b] = fp16_to_fp32(m);
        }
        std::fill_n(mins, k / k_qk * int64_t(sizeof(uint16_t)), std::byte{0});
    } else if (w.type == dtype::q4_1) {
        move_offsets(reinterpret_cast<block_q4_1 *>(buf.data()));
    } else {
        move_offsets(reinterpret_cast<block_q5_1 *>(buf.data()));
    }
    dequantize_row(w.type, buf.data(), out, k);
}

// How a GEMM's [K, N] weight sits in memory.
enum class weight_layout : uint8_t {
    rows,    // [N, K] row-major, as a file stores a linear weight
    columns, // [K, N] row-major (linear_t)
    panels,  // ops/gemm_pack.hpp's panels, where oneDNN takes them (its AVX-512 brgemm): M fixed,
             // run by one thread on its own chunk (matmul_context::linear_panels)
};

dims weight_strides(int64_t k, int64_t n, weight_layout layout) {
    return layout == weight_layout::columns ? dims{n, 1} : dims{1, k};
}

// --- int8 prefill -----------------------------------------------------------------------------
// Y = X · Wᵀ as one u8 × s8 → s32 GEMM per slab of weight rows:
//   weights: each row dequantized and requantized to s8 with its own scale sw[n] (|q| <= level);
//   activations: each token quantized to s8 with its own scale sx[m], stored as u8 = q + 128;
//   Y[m, n] = sx[m] · sw[n] · (acc[m, n] − 128 · Σ_k qw[n, k]).
// Without VNNI, oneDNN multiplies with vpmaddubsw, whose int16 sum of two u8·s8 products
// saturates above 32767: 2 · 255 · 64 = 32640 fits, so weights keep 64 levels a side there and
// 127 with VNNI (vpdpbusd sums in int32).

constexpr int k_act_zero_point = 128;

int int8_weight_level() {
    cap_onednn_isa();
    return dnnl_compat::int8_pairs_saturate() ? 64 : 127;
}

// The conversions around the BF16 and int8 GEMMs touch every weight of a slab once per call. Their loops
// are written once (always inlined) and compiled twice: into AVX2+FMA entry points, chosen when
// the quant kernels run AVX2 (CPUID), and into baseline x86-64 ones. Not target_clones: its ifunc
// resolvers run before ThreadSanitizer's runtime starts (a crash), and musl has no ifunc.
#if defined(__x86_64__)
#  define FRUGAL_AVX2_TARGET __attribute__((target("avx2,fma,f16c")))
#else
#  define FRUGAL_AVX2_TARGET
#endif
#define FRUGAL_INLINE [[gnu::always_inline]] inline

// q[i] = round(x[i] · level / amax) with |q| <= level; returns the scale amax / level (0 for a zero row).
FRUGAL_INLINE float quantize_row_s8(const float * x, int8_t * q, int64_t n, int level) {
    float amax = 0;
#pragma omp simd reduction(max : amax)
    for (int64_t i = 0; i < n; ++i) amax = std::max(amax, std::fabs(x[i]));
    const float inv = amax > 0 ? float(level) / amax : 0.f;
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) q[i] = int8_t(std::rint(x[i] * inv)); // ties to even (SSE4.1 roundps)
    return amax / float(level);
}

// Activation row: u[i] = round(x[i] · 127 / amax) + 128; returns the scale amax / 127.
FRUGAL_INLINE float quantize_row_u8(const float * x, uint8_t * u, int64_t n) {
    auto * q = reinterpret_cast<int8_t *>(u);
    const float scale = quantize_row_s8(x, q, n, 127);
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) u[i] = uint8_t(q[i] + k_act_zero_point);
    return scale;
}

// Weight row in any type → s8 q[n] (|q| <= level); returns the scale, and Σ q in *sum.
FRUGAL_INLINE float requantize_row_s8(dtype t, const std::byte * row, float * tmp, int8_t * q, int64_t n, int level,
                                      int32_t * sum) {
    dequantize_row(t, row, tmp, n);
    const float scale = quantize_row_s8(tmp, q, n, level);
    int32_t s = 0;
#pragma omp simd reduction(+ : s)
    for (int64_t i = 0; i < n; ++i) s += q[i];
    *sum = s;
    return scale;
}

// y[r] = sx · sw[r] · (acc[r] − 128 · wsum[r]) for one token's n outputs.
FRUGAL_INLINE void dequantize_acc(const int32_t * acc, float sx, const float * sw, const int32_t * wsum, float * y,
                                  int64_t n) {
#pragma omp simd
    for (int64_t r = 0; r < n; ++r) y[r] = sx * sw[r] * float(acc[r] - k_act_zero_point * wsum[r]);
}

// Weight row in any type → BF16 out[n] (round to nearest even), through tmp[n].
FRUGAL_INLINE void dequantize_row_bf16(dtype t, const std::byte * row, float * tmp, uint16_t * out, int64_t n) {
    dequantize_row(t, row, tmp, n);
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) out[i] = fp32_to_bf16(tmp[i]);
}

FRUGAL_INLINE void convert_bf16(const float * x, uint16_t * out, int64_t n) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) out[i] = fp32_to_bf16(x[i]);
}

struct slab_conversions {
    void (*to_bf16)(dtype t, const std::byte * row, float * tmp, uint16_t * out, int64_t n);
    void (*activations_to_bf16)(const float * x, uint16_t * out, int64_t n);
    float (*quantize_u8)(const float * x, uint8_t * u, int64_t n);
    float (*requantize_s8)(dtype t, const std::byte * row, float * tmp, int8_t * q, int64_t n, int level, int32_t * sum);
    void (*dequantize_acc)(const int32_t * acc, float sx, const float * sw, const int32_t * wsum, float * y, int64_t n);
};

// The entry points of each instruction set: thin wrappers the bodies are inlined into.
#define FRUGAL_SLAB_ENTRIES(suffix, target)                                                                    \
    target void to_bf16_##suffix(dtype t, const std::byte * row, float * tmp, uint16_t * out, int64_t n) {       \
        dequantize_row_bf16(t, row, tmp, out, n);                                                                \
    }                                                                                                            \
    target void activations_to_bf16_##suffix(const float * x, uint16_t * out, int64_t n) { convert_bf16(x, out, n); } \
    target float quantize_u8_##suffix(const float * x, uint8_t * u, int64_t n) { return quantize_row_u8(x, u, n); } \
    target float requantize_s8_##suffix(dtype t, const std::byte * row, float * tmp, int8_t * q, int64_t n,       \
                                        int level, int32_t * sum) {                                              \
        return requantize_row_s8(t, row, tmp, q, n, level, sum);                                                 \
    }                                                                                                            \
    target void dequantize_acc_##suffix(const int32_t * acc, float sx, const float * sw, const int32_t * wsum,    \
                                        float * y, int64_t n) {                                                  \
        dequantize_acc(acc, sx, sw, wsum, y, n);                                                                 \
    }                                                                                                            \
    constexpr slab_conversions k_slab_##suffix{to_bf16_##suffix, activations_to_bf16_##suffix, quantize_u8_##suffix, \
                                               requantize_s8_##suffix, dequantize_acc_##suffix};
FRUGAL_SLAB_ENTRIES(baseline, )
FRUGAL_SLAB_ENTRIES(avx2, FRUGAL_AVX2_TARGET)
#undef FRUGAL_SLAB_ENTRIES

// With AVX512-BF16, activations take its conversion (gemm_pack::round_to_bf16: denormals become
// zeros, otherwise the same values): one instruction per 32 where AVX2 emulates the rounding.
void activations_to_bf16_avx512(const float * x, uint16_t * out, int64_t n) { gemm_pack::round_to_bf16(x, out, n); }
constexpr slab_conversions k_slab_avx512_bf16{to_bf16_avx2, activations_to_bf16_avx512, quantize_u8_avx2,
                                              requantize_s8_avx2, dequantize_acc_avx2};

const slab_conversions & slab_conversions_here() {
    if (!detail::avx2_active()) return k_slab_baseline;
    return detail::avx512_bf16_supported() ? k_slab_avx512_bf16 : k_slab_avx2;
}

} // namespace

bool int8_prefill_type(dtype t) {
    switch (t) {
    case dtype::q4_0: case dtype::q4_0_repacked: case dtype::q5_0: case dtype::q5_0_repacked: case dtype::iq4_nl:
    case dtype::iq4_nl_repacked: case dtype::q4_k: case dtype::q5_k: return true;
    default: return false;
    }
}

namespace {
void check_output_stride(int64_t ldy, int64_t n) {
    if (ldy < n) throw_error(status::invalid_argument, "matmul: output stride {} < {} output features", ldy, n);
}

// The float path this CPU runs best: the default for weight types q8 does not take.
prefill_gemm float_prefill_here() {
    cap_onednn_isa();
    return dnnl_compat::has_native_bf16() ? prefill_gemm::bf16 : prefill_gemm::f32;
}
} // namespace

prefill_gemm default_prefill_gemm() {
    static const prefill_gemm g = [] {
        const char * env = std::getenv("FRUGAL_PREFILL_GEMM");
        if (!env || !*env) return prefill_gemm::automatic;
        for (prefill_gemm v : {prefill_gemm::automatic, prefill_gemm::f32, prefill_gemm::bf16, prefill_gemm::int8,
                               prefill_gemm::q8})
            if (std::string_view(env) == prefill_gemm_name(v)) return v;
        FRUGAL_LOG_WARN("FRUGAL_PREFILL_GEMM={} is not auto, f32, bf16, int8 or q8: using auto", env);
        return prefill_gemm::automatic;
    }();
    return g;
}

bool prefill_gemm_native(prefill_gemm g) {
    switch (g) {
    case prefill_gemm::q8: return q8::chunk_kernel() != nullptr;
    case prefill_gemm::bf16: return float_prefill_here() == prefill_gemm::bf16;
    default: return true;
    }
}

const char * prefill_gemm_name(prefill_gemm g) {
    switch (g) {
    case prefill_gemm::automatic: return "auto";
    case prefill_gemm::f32: return "f32";
    case prefill_gemm::bf16: return "bf16";
    case prefill_gemm::int8: return "int8";
    case prefill_gemm::q8: return "q8";
    }
    return "?";
}

int64_t amx_bf16_from(dtype t) {
    if (t == dtype::f16) return 48;
    return traits(t).block_size == k_qk_k ? 128 : 96;
}

namespace {
// The weight types the bf16 path multiplies in BF16 (the others take f32 there).
// F16 only as two BF16 parts on AMX (linear_f16_split).
bool bf16_takes(dtype t) { return !has_block_offsets(t) && (t != dtype::f16 || amx::bf16_available()); }
} // namespace

prefill_gemm prefill_gemm_for(prefill_gemm chosen, dtype t, int64_t m) {
    if (t == dtype::f32) return prefill_gemm::f32; // multiplied as stored
    if (chosen == prefill_gemm::int8) {
        if (int8_prefill_type(t)) return prefill_gemm::int8;
        chosen = prefill_gemm::automatic;
    }
    if (chosen == prefill_gemm::automatic) {
        const bool amx_rows = m >= amx_bf16_from(t) && bf16_takes(t) && amx::bf16_available();
        chosen = amx_rows ? prefill_gemm::bf16 : q8::chunk_kernel() ? prefill_gemm::q8 : float_prefill_here();
    }
    if (chosen == prefill_gemm::q8) {
        if (q8::supports(t)) return q8::kernel_for(t) ? prefill_gemm::q8 : prefill_gemm::f32;
        chosen = float_prefill_here();
    }
    if (chosen == prefill_gemm::bf16 && bf16_takes(t)) return prefill_gemm::bf16;
    return prefill_gemm::f32;
}

struct matmul_context::impl {
    dnnl::engine engine{dnnl::engine::kind::cpu, 0};
    dnnl::stream stream{engine};
    // M (0 where left open: rows, columns), K, N, ldy, weight dtype, weight layout
    using key = std::tuple<int64_t, int64_t, int64_t, int64_t, int, weight_layout>;
    // nullopt: BF16 with no fast oneDNN implementation on this CPU (run_gemm widens to F32), or
    // panels that oneDNN does not take here.
    std::map<key, std::optional<gemm_plan>> primitives;
    // panels_available's answers for F32 and BF16, once asked: gemm_from asks on every call,
    // decode's included, where a plan lookup (or the cache's making room for one) has no place.
    std::optional<bool> panels_f32, panels_bf16;
    // Above this many, the cache starts over: panels' primitives are per M, and a long-running
    // session sees prompts of many lengths.
    static constexpr size_t k_max_primitives = 256;
    std::vector<std::byte> quant_scratch;
    std::vector<float> slab;              // dequantized weight rows [rows, K]
    // Panels: per thread, a chunk's panels, 16 rows on their way into them, the chunk's output
    // [m, 128] and the matmul's scratchpad, and a oneDNN stream; a piece of K's activations
    // [m, piece], dense.
    std::vector<std::byte> panel_scratch, x_piece;
    std::vector<dnnl::stream> thread_streams;
    std::vector<float> x_rounded;         // activations rounded as the weight type's kernels see them
    // BF16 path: activations [m, K] and a weight slab [rows, K] in BF16.
    std::vector<uint16_t> x_bf16, slab_bf16;
    // BF16 operands widened to F32 where oneDNN has no fast BF16 matmul.
    std::vector<float> x_widened, w_widened;
    // int8 path: activations [m, K] as u8 with per-token scales; weight slab [rows, K] as s8 with
    // per-row scales and quant sums; the GEMM's s32 output [m, rows].
    std::vector<uint8_t> x_u8;
    std::vector<float> x_scale, w_scale;
    std::vector<int8_t> slab_s8;
    std::vector<int32_t> w_sum, acc_s32;
    std::map<std::pair<int64_t, int64_t>, dnnl::matmul> int8_primitives; // (K, rows)
    // q8 path: activations [m, K] as u8 (qx + 128) with block scales and (weights with offsets)
    // block sums [m, K/32]; each thread's packed chunk of weight rows.
    std::vector<uint8_t> x_q8;
    std::vector<float> x_q8_scale;
    std::vector<int16_t> x_q8_sum;
    std::vector<std::byte> q8_chunks;

    // [M, K] u8 × [K, N] s8 (stored [N, K]) → [M, N] s32, M left open.
    dnnl::matmul & int8_primitive(int64_t k, int64_t n) {
        auto it = int8_primitives.find({k, n});
        if (it != int8_primitives.end()) return it->second;
        const auto M = DNNL_RUNTIME_DIM_VAL;
        const dnnl::memory::desc src_md(dims{M, k}, dt::u8, dims{k, 1});
        const dnnl::memory::desc w_md(dims{k, n}, dt::s8, dims{1, k});
        const dnnl::memory::desc dst_md(dims{M, n}, dt::s32, dims{n, 1});
        return int8_primitives.emplace(std::pair{k, n}, dnnl::matmul(dnnl_compat::matmul_pd(engine, src_md, w_md, dst_md)))
            .first->second;
    }

    // The F32 or BF16 matmul for this shape and weight layout (panels: for m rows; the others
    // leave M open), or nullptr for BF16 that oneDNN runs only in its reference code or not at
    // all (oneDNN 2.6 implements BF16 matmul from AVX-512 on) and for panels oneDNN does not
    // take on this CPU. make_room first, for as many plans as the caller holds at once.
    const gemm_plan * plan(int64_t m, int64_t k, int64_t n, int64_t ldy, dtype wtype, weight_layout layout) {
        const key kk{layout == weight_layout::panels ? m : 0, k, n, ldy, int(wtype), layout};
        auto it = primitives.find(kk);
        if (it == primitives.end()) it = primitives.emplace(kk, create(kk)).first;
        return it->second ? &*it->second : nullptr;
    }
    void make_room(size_t plans) {
        if (primitives.size() + plans > k_max_primitives) primitives.clear();
    }

    std::optional<gemm_plan> create(const key & kk) const {
        const auto [m, k, n, ldy, type, layout] = kk;
        const dtype wtype = dtype(type);
        const bool bf16 = wtype == dtype::bf16;
        const dt t = bf16 ? dt::bf16 : dt::f32;
        const bool panels = layout == weight_layout::panels;
        const auto M = panels ? m : DNNL_RUNTIME_DIM_VAL;
        // src [M, K] row-major; weights [K, N] in `layout` (panels: the format oneDNN picks, taken
        // only if it is gemm_pack's); dst [M, N] with row stride ldy so a slab can write into a
        // wider output.
        const dnnl::memory::desc src_md(dims{M, k}, t, dims{k, 1});
        const dnnl::memory::desc w_md = panels ? dnnl::memory::desc(dims{k, n}, t, dnnl::memory::format_tag::any)
                                               : dnnl::memory::desc(dims{k, n}, t, weight_strides(k, n, layout));
        const dnnl::memory::desc dst_md(dims{M, n}, dt::f32, dims{ldy, 1});
        try {
            // Panels run one matmul per thread, each on one thread, with its own scratchpad.
            omp_threads_scope threads(panels ? 1 : 0);
            dnnl::primitive_attr attr;
            if (panels) attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
            auto pd = dnnl_compat::matmul_pd(engine, src_md, w_md, dst_md, attr);
            FRUGAL_LOG_DEBUG("matmul: {} m={} k={} n={}: oneDNN {}", dtype_name(wtype), M, k, n, pd.impl_info_str());
            if (bf16 && std::string_view(pd.impl_info_str()).starts_with("ref")) return std::nullopt;
            gemm_plan p{dnnl::matmul(pd), pd.weights_desc()};
            if (panels && !(p.k_padded = dnnl_compat::gemm_panels_padded_k(p.weights))) return std::nullopt;
            if (panels) p.scratchpad = pd.scratchpad_desc();
            return p;
        } catch (const dnnl::error & e) {
            if (panels) return std::nullopt;
            if (bf16) {
                FRUGAL_LOG_DEBUG("matmul: no oneDNN bf16 matmul for k={} n={} here: widened to f32", k, n);
                return std::nullopt;
            }
            throw_error(status::internal, "matmul: oneDNN has no f32 matmul for k={} n={}: {}", k, n, e.what());
        }
    }
};

matmul_context::matmul_context(int n_threads) : n_threads_(n_threads) {
    cap_onednn_isa(); // before the engine and any primitive
    impl_ = std::make_unique<impl>();
}
matmul_context::~matmul_context() = default;

void matmul_context::gemm(dtype wtype, const void * w, int64_t n, int64_t k, const float * x, int64_t m, float * y,
                          int64_t ldy) {
    const profile::scope timed(profile::op::matmul);
    if (wtype != dtype::f32 && wtype != dtype::bf16)
        throw_error(status::invalid_argument, "matmul: gemm takes f32 or bf16 weights, not {}", dtype_name(wtype));
    if (m <= 0 || n <= 0 || k <= 0 || ldy < n)
        throw_error(status::invalid_argument, "matmul: bad gemm shape m={} n={} k={} ldy={}", m, n, k, ldy);
    const void * src = x;
    if (wtype == dtype::bf16) {
        uint16_t * xb = grow(impl_->x_bf16, m * k);
        for (int64_t i = 0; i < m; ++i) slab_conversions_here().activations_to_bf16(x + i * k, xb + i * k, k);
        src = xb;
    }
    run_gemm(wtype, src, w, n, k, m, y, ldy, false);
}

void matmul_context::run_gemm(dtype wtype, const void * x, const void * w, int64_t n, int64_t k, int64_t m, float * y,
                              int64_t ldy, bool w_kn) {
    omp_threads_scope threads(n_threads_);
    impl_->make_room(1);
    const gemm_plan * plan = impl_->plan(m, k, n, ldy, wtype, w_kn ? weight_layout::columns : weight_layout::rows);
    if (!plan) {
        // BF16 without a fast oneDNN matmul: the same rounded operands, widened (exactly) to F32.
        // The products of two BF16 values are exact in F32, so only the summation order differs
        // from a native BF16 GEMM (f32 accumulation).
        const auto widen = [](const void * from, std::vector<float> & to, int64_t count) {
            const auto * h = static_cast<const uint16_t *>(from);
            float * f = grow(to, count);
#pragma omp parallel for schedule(static) if (count >= (1 << 16))
            for (int64_t i = 0; i < count; ++i) f[i] = bf16_to_fp32(h[i]);
            return f;
        };
        const float * xf = widen(x, impl_->x_widened, m * k);
        const float * wf = widen(w, impl_->w_widened, n * k);
        run_gemm(dtype::f32, xf, wf, n, k, m, y, ldy, w_kn);
        return;
    }
    const dt t = wtype == dtype::bf16 ? dt::bf16 : dt::f32;
    // Memory objects wrap caller pointers; oneDNN never writes src or weights.
    dnnl::memory src_mem({dims{m, k}, t, dims{k, 1}}, impl_->engine, const_cast<void *>(x));
    dnnl::memory w_mem(plan->weights, impl_->engine, const_cast<void *>(w));
    dnnl::memory dst_mem({dims{m, n}, dt::f32, dims{ldy, 1}}, impl_->engine, y);
    plan->prim.execute(impl_->stream, {{DNNL_ARG_SRC, src_mem}, {DNNL_ARG_WEIGHTS, w_mem}, {DNNL_ARG_DST, dst_mem}});
    impl_->stream.wait();
}

int64_t matmul_context::gemm_from(dtype t) {
    if (gemm_from_rows > 0) return gemm_from_rows;
    int64_t from = k_default_gemm_from;
    const prefill_gemm path = prefill_gemm_for(prefill, t); // at small m, where the crossover is
    if (path == prefill_gemm::q8) {
        if (const q8::kernel * k = q8::kernel_for(t); k && k->gemm_from)
            if (const int64_t measured = k->gemm_from(t); measured > 0) from = measured;
    } else if (path == prefill_gemm::f32 || path == prefill_gemm::bf16) {
        const dtype on = path == prefill_gemm::bf16 ? dtype::bf16 : dtype::f32;
        auto & known = on == dtype::bf16 ? impl_->panels_bf16 : impl_->panels_f32;
        if (!known) known = panels_available(on);
        if (prefill_panels && *known) from = k_panels_gemm_from;
        else if (t == dtype::f16) from = k_f16_slab_gemm_from;
        else if (t == dtype::iq4_xs || t == dtype::iq4_nl_repacked) from = k_iq4_rows_gemm_from;
    }
    return std::min(small_batch, from);
}

bool matmul_context::panels_available(dtype t) {
    constexpr int64_t side = gemm_pack::panel_cols;
    impl_->make_room(1);
    return impl_->plan(side, side, side, side, t, weight_layout::panels) != nullptr;
}

// Scratch each thread keeps while it writes weight rows into panels.
struct matmul_context::pack_scratch {
    std::vector<std::byte> buf; // dequantize_for_gemm's (Q4_1, Q5_1)
    std::vector<float> row;     // a row in F32 on its way to BF16; 16 rows' pieces (AVX512-BF16)
};

struct matmul_context::panel_rows {
    // Writes elements [k0, k0 + kc) of weight row r (as F32 or BF16) at dst.
    std::function<void(int64_t r, int64_t k0, int64_t kc, void * dst, pack_scratch & scratch)> row;
    // Writes elements [k0, k0 + kc) of the 16 rows from r at `at` in the panel in one step, or
    // returns false (then `row` does).
    std::function<bool(int64_t r, int64_t k0, int64_t kc, void * at, pack_scratch & scratch)> group;
    // Whether the rows can be written in pieces along K (F32, F16, BF16 weights); otherwise
    // k0 = 0 and kc = K always.
    bool pieces;
    // Values a row writes per value of K (3: an F16 weight's hi, lo and hi parts).
    int64_t split = 1;
};

void matmul_context::write_chunk(const panel_rows & rows, int64_t element, std::byte * panel, std::byte * staging,
                                 int64_t c0, int64_t cols, int64_t k0, int64_t kc, int64_t kcp, pack_scratch & ps) {
    constexpr int64_t group = gemm_pack::group_rows;
    const int64_t n_panels = (cols + gemm_pack::panel_cols - 1) / gemm_pack::panel_cols;
    for (int64_t g0 = 0; g0 < n_panels * gemm_pack::panel_cols; g0 += group) {
        std::byte * at = panel + (g0 / gemm_pack::panel_cols) * kcp * gemm_pack::panel_cols * element +
                         g0 % gemm_pack::panel_cols * 4;
        if (g0 + group <= cols && rows.group(c0 + g0, k0, kc, at, ps)) continue;
        for (int64_t i = 0; i < group; ++i) {
            std::byte * dst = staging + i * kcp * element;
            const bool real = g0 + i < cols;
            if (real) rows.row(c0 + g0 + i, k0, kc, dst, ps);
            std::fill(dst + (real ? kc * rows.split * element : 0), dst + kcp * element, std::byte{0});
        }
        gemm_pack::transpose_group(staging, kcp * element, kcp * element / 4, at);
    }
}

// Bytes of a weight row per piece of K at most, where panels may be written in pieces: 2 MiB
// per chunk of panels (8 KiB per row measured 1-3 % slower), and with 512 rows 8 MiB of
// activations per piece (copied out dense: brgemm takes no other row stride), which stay in L3
// while every chunk reads them. Zen 5, 1 thread, a panel of K = 18944 F32 already in cache:
// 232 GFLOP/s against 258 at K = 4736; the activations, [512, 18944] in F32, were 38 MiB.
namespace {
constexpr int64_t k_piece_bytes = 16 << 10;

// The piece of K panels are written in (whole 256s but the last piece), K itself where `pieces`
// is false.
int64_t k_piece(int64_t k, int64_t element, bool pieces) {
    const int64_t n_pieces = pieces ? (k * element + k_piece_bytes - 1) / k_piece_bytes : 1;
    return n_pieces == 1 ? k : ((k + n_pieces - 1) / n_pieces + 255) / 256 * 256;
}

size_t aligned_64(size_t bytes) { return (bytes + 63) / 64 * 64; }
} // namespace

// Each thread takes chunks of 128 weight rows: writes a chunk into two panels of its own
// (gemm_pack.hpp; 768 KiB at K = 1536 F32, in L2), runs their matmul on one thread into its own
// [m, 128] output, and copies that into y's columns (oneDNN 2.6's brgemm writes only a dense
// output). One 2-thread GEMM per 8 MiB slab of panels was slower: the threads waited for each
// other's packing, and the slab's stores went past L2. Zen 5, 2 threads, GFLOP/s of `linear`
// on an F16 weight at M = 512 / 128: [8960, 1536] 393 / 273 on slabs of rows, 402 / 365 on
// slabs of panels, 462 / 410 on per-thread chunks of 64 rows, 486 / 439 of 128 (256: 467 / 436);
// [1536, 8960]: 374 / 317 → 435 / 421 → 462 / 443. BF16 weights, chunks of 64 → 128: 877 → 914
// and 852 → 894 at M = 512. The GEMM alone on ready panels: F32 470-510, BF16 about 1030.
bool matmul_context::linear_panels(const raw_view & w, dtype t, const void * x, int64_t m, int64_t k, float * y,
                                   int64_t ldy, const panel_rows & rows) {
    constexpr int64_t chunk = 2 * gemm_pack::panel_cols, group = gemm_pack::group_rows;
    const int64_t n = w.shape.rows();
    const int64_t element = t == dtype::bf16 ? 2 : 4;
    auto & im = *impl_;
    if (!prefill_panels) return false;
    // K in pieces of equal size (whole 256s but the last), each with its plans for a whole chunk
    // and for the last, narrower one.
    const int64_t piece = k_piece(k, element, rows.pieces), n_pieces = (k + piece - 1) / piece;
    struct piece_plans {
        int64_t kc;
        const gemm_plan *full = nullptr, *tail = nullptr;
    };
    const int64_t last = k - piece * ((k - 1) / piece); // the last piece's K
    piece_plans sizes[2] = {{piece}, {last}};
    im.make_room(4);
    for (auto & sz : std::span(sizes, last == piece ? 1 : 2)) {
        sz.full = n >= chunk ? im.plan(m, sz.kc, chunk, chunk, t, weight_layout::panels) : nullptr;
        sz.tail = n % chunk ? im.plan(m, sz.kc, n % chunk, n % chunk, t, weight_layout::panels) : nullptr;
        if ((n >= chunk && !sz.full) || (n % chunk && !sz.tail)) return false;
    }
    const gemm_plan & any = sizes[0].full ? *sizes[0].full : *sizes[0].tail;
    const int64_t kp = any.k_padded; // the first piece is the longest
    const dt type = t == dtype::bf16 ? dt::bf16 : dt::f32;
    // Per thread, each part 64-byte aligned: the panels (2 of [kp words, 64 columns]), 16 rows
    // [16, kp], the output [m, 128] and the largest scratchpad.
    const size_t panel_bytes = aligned_64(any.weights.get_size()), rows_bytes = aligned_64(size_t(group * kp * element));
    const size_t out_bytes = aligned_64(size_t(m * chunk) * sizeof(float));
    size_t pad_bytes = 0;
    for (const auto & sz : sizes)
        for (const gemm_plan * p : {sz.full, sz.tail})
            if (p) pad_bytes = std::max(pad_bytes, aligned_64(p->scratchpad.get_size()));
    const size_t per_thread = panel_bytes + rows_bytes + out_bytes + pad_bytes;
    omp_threads_scope threads(n_threads_);
    const int n_thr = omp_get_max_threads();
    std::byte * scratch = grow(im.panel_scratch, int64_t(per_thread) * n_thr + 64);
    scratch += (64 - reinterpret_cast<uintptr_t>(scratch) % 64) % 64;
    // A piece's activations [m, kc], dense: oneDNN 2.6's brgemm takes no row stride but K.
    std::byte * x_piece = n_pieces > 1 ? grow(im.x_piece, m * piece * element) : nullptr;
    while (im.thread_streams.size() < size_t(n_thr)) im.thread_streams.emplace_back(im.engine);
#pragma omp parallel
    {
        const int me = omp_get_thread_num();
        std::byte * panel = scratch + per_thread * size_t(me);
        std::byte * group_rows = panel + panel_bytes;
        auto * out = reinterpret_cast<float *>(group_rows + rows_bytes);
        std::byte * pad = group_rows + rows_bytes + out_bytes;
        dnnl::stream & stream = im.thread_streams[size_t(me)];
        pack_scratch ps;
        for (int64_t k0 = 0; k0 < k; k0 += piece) { // every thread; the loop's barrier between pieces
            const piece_plans & sz = k - k0 >= piece ? sizes[0] : sizes[1];
            const int64_t kc = sz.kc, kcp = (sz.full ? sz.full : sz.tail)->k_padded;
            const void * src = x;
            if (x_piece) {
#pragma omp for schedule(static)
                for (int64_t i = 0; i < m; ++i)
                    std::memcpy(x_piece + i * kc * element, static_cast<const std::byte *>(x) + (i * k + k0) * element,
                                size_t(kc * element));
                src = x_piece;
            }
            dnnl::memory src_mem({dims{m, kc}, type, dims{kc, 1}}, im.engine, const_cast<void *>(src));
            // Guided, as multiply_q8's chunks: a thread the host slows down is not waited for
            // (1.5B F16 pp512 77 t/s either way on a calm Zen 4, 5 alternating pairs).
#pragma omp for schedule(guided)
            for (int64_t c0 = 0; c0 < n; c0 += chunk) {
                const int64_t cols = std::min(chunk, n - c0);
                const gemm_plan & plan = cols == chunk ? *sz.full : *sz.tail;
                write_chunk(rows, element, panel, group_rows, c0, cols, k0, kc, kcp, ps);
                dnnl::memory w_mem(plan.weights, im.engine, panel);
                dnnl::memory dst_mem({dims{m, cols}, dt::f32, dims{cols, 1}}, im.engine, out);
                dnnl::memory pad_mem(plan.scratchpad, im.engine, pad);
                plan.prim.execute(stream, {{DNNL_ARG_SRC, src_mem},
                                           {DNNL_ARG_WEIGHTS, w_mem},
                                           {DNNL_ARG_DST, dst_mem},
                                           {DNNL_ARG_SCRATCHPAD, pad_mem}});
                stream.wait();
                for (int64_t i = 0; i < m; ++i) {
                    float * yi = y + i * ldy + c0;
                    const float * oi = out + i * cols;
                    if (k0 == 0) std::copy_n(oi, cols, yi);
                    else
                        for (int64_t j = 0; j < cols; ++j) yi[j] += oi[j];
                }
            }
        }
    }
    return true;
}

// linear_panels on AMX tiles (ops/amx_gemm.hpp): each thread writes chunks of 128 weight rows
// into its own panels, as there, and multiplies the packed activations by them straight into
// y's columns (no output copy, no dense copy of a piece's activations).
void matmul_context::linear_panels_amx(const raw_view & w, const uint16_t * packed, int64_t m, int64_t k, float * y,
                                       int64_t ldy, const panel_rows & rows) {
    constexpr int64_t chunk = 2 * gemm_pack::panel_cols, element = 2;
    const int64_t n = w.shape.rows(), split = rows.split;
    const int64_t piece = k_piece(k, element * split, rows.pieces);
    // Per thread: the panels [piece · split, 128] and 16 rows [16, piece · split] on their way
    // into them.
    const size_t panel_bytes = aligned_64(size_t(chunk * piece * split * element));
    const size_t per_thread = panel_bytes + aligned_64(size_t(gemm_pack::group_rows * piece * split * element));
    omp_threads_scope threads(n_threads_);
    std::byte * scratch = grow(impl_->panel_scratch, int64_t(per_thread) * omp_get_max_threads() + 64);
    scratch += (64 - reinterpret_cast<uintptr_t>(scratch) % 64) % 64;
#pragma omp parallel
    {
        std::byte * panel = scratch + per_thread * size_t(omp_get_thread_num());
        std::byte * staging = panel + panel_bytes;
        pack_scratch ps;
        for (int64_t k0 = 0; k0 < k; k0 += piece) { // every thread; the loop's barrier between pieces
            const int64_t kc = std::min(piece, k - k0);
#pragma omp for schedule(guided)
            for (int64_t c0 = 0; c0 < n; c0 += chunk) {
                const int64_t cols = std::min(chunk, n - c0);
                write_chunk(rows, element, panel, staging, c0, cols, k0, kc, kc * split, ps);
                amx::gemm_bf16_panels(packed, m, k * split, k0 * split, kc * split, panel, cols, y + c0, ldy, k0 > 0);
            }
        }
    }
}

void matmul_context::linear(const raw_view & w, const float * x, int64_t m, float * y, int64_t ldy) {
    linear_any(w, x, nullptr, m, y, ldy);
}

void matmul_context::linear_consuming(const raw_view & w, float * x, int64_t m, float * y) {
    linear_any(w, x, x, m, y, w.shape.rows());
}

void matmul_context::linear_any(const raw_view & w, const float * x, float * x_scratch, int64_t m, float * y,
                                int64_t ldy) {
    const profile::scope timed(profile::op::matmul);
    const int64_t n = w.shape.rows();
    if (m <= 0) return;
    check_output_stride(ldy, n);
    if (m < gemm_from(w.type)) {
        matmul_rows(w, x, m, y, impl_->quant_scratch, n_threads_, ldy);
        return;
    }
    if (w.type == dtype::f32) {
        linear_f32(w, x, x_scratch, m, y, ldy);
        return;
    }
    switch (prefill_gemm_for(prefill, w.type, m)) {
    case prefill_gemm::automatic: // resolved by prefill_gemm_for
    case prefill_gemm::f32: linear_f32(w, x, x_scratch, m, y, ldy); break;
    case prefill_gemm::bf16: linear_bf16(w, x, m, y, ldy); break;
    case prefill_gemm::int8: linear_int8(w, x, m, y, ldy); break;
    case prefill_gemm::q8: linear_q8(w, x, m, y, ldy); break;
    }
}

// Round the activations as the small-batch kernels do (in x_scratch when there is one and the
// rounded row is no longer than x's; F32 weights take x as it is), then dequantize slabs of
// weight rows to F32, into panels where oneDNN takes them (else as rows; F32 weights then as
// mapped), and GEMM each into its columns of y.
void matmul_context::linear_f32(const raw_view & w, const float * x, float * x_scratch, int64_t m, float * y,
                                int64_t ldy) {
    const int64_t n = w.shape.rows();
    const int64_t k = w.shape.innermost();
    const int64_t kg = gemm_k(w.type, k);
    auto & im = *impl_;
    omp_threads_scope threads(n_threads_);
    const float * xr = x;
    if (w.type != dtype::f32) {
        float * rounded = x_scratch && kg == k ? x_scratch : grow(im.x_rounded, m * kg); // works in place
#pragma omp parallel
        {
            std::vector<std::byte> buf;
#pragma omp for schedule(static)
            for (int64_t i = 0; i < m; ++i) round_activation(w.type, x + i * k, rounded + i * kg, k, buf);
        }
        xr = rounded;
    }
    // F32 and F16 rows go from the file into the panels in one step (K in whole blocks, as in
    // every model).
    const bool whole_blocks = kg % gemm_pack::block_words == 0;
    const bool elementwise = w.type == dtype::f32 || w.type == dtype::f16;
    const panel_rows to_panels{
        [&](int64_t r, int64_t k0, int64_t kc, void * dst, pack_scratch & s) {
            if (kc == kg) dequantize_for_gemm(w, r, static_cast<float *>(dst), s.buf);
            else dequantize_row(w.type, w.row(r) + row_bytes(w.type, k0), static_cast<float *>(dst), kc);
        },
        [&](int64_t r, int64_t k0, int64_t kc, void * at, pack_scratch &) {
            if (!whole_blocks) return false;
            const std::byte * from = w.row(r) + row_bytes(w.type, k0);
            if (w.type == dtype::f16)
                return gemm_pack::transpose_group_f16(from, w.row_stride(), kc, static_cast<float *>(at));
            if (w.type != dtype::f32) return false;
            gemm_pack::transpose_group(from, w.row_stride(), kc, at);
            return true;
        },
        elementwise};
    if (linear_panels(w, dtype::f32, xr, m, kg, y, ldy, to_panels)) return;
    if (w.type == dtype::f32) {
        run_gemm(dtype::f32, xr, w.data, n, kg, m, y, ldy, false);
        return;
    }
    const int64_t slab_rows = balanced_slab_rows(n, kg * int64_t(sizeof(float)));
    float * slab = grow(im.slab, slab_rows * kg);
    for (int64_t r0 = 0; r0 < n; r0 += slab_rows) {
        const int64_t rows = std::min(slab_rows, n - r0);
#pragma omp parallel
        {
            std::vector<std::byte> buf;
#pragma omp for schedule(static)
            for (int64_t r = 0; r < rows; ++r) dequantize_for_gemm(w, r0 + r, slab + r * kg, buf);
        }
        run_gemm(dtype::f32, xr, slab, rows, kg, m, y + r0, ldy, false);
    }
}

// x [m, K] → BF16 in the AMX kernel's tile order (split: each step as hi, hi, lo), a block of 32
// rows at a time.
const uint16_t * matmul_context::pack_for_amx(const float * x, int64_t m, int64_t k, bool split) {
    omp_threads_scope threads(n_threads_);
    const int64_t parts = split ? 3 : 1, blocks = (m + 31) / 32, block_values = amx::packed_elements(32, k) * parts;
    uint16_t * packed = grow(impl_->x_bf16, amx::packed_elements(m, k) * parts);
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < blocks; ++b)
        amx::pack_activations(x + b * 32 * k, k, std::min<int64_t>(32, m - b * 32), k, packed + b * block_values, split);
    return packed;
}

// F16 weights on AMX: each weight as hi + lo BF16 parts (exact), the activations as hi + lo
// too, three BF16 products per step (hi·hi + hi·lo + lo·hi): within about 2^-17 of each exact
// product, finer than llama.cpp's F16 rounding of the activations (2^-12), at three times the
// BF16 work, which AMX does several times faster than the F32 path's AVX-512.
void matmul_context::linear_f16_split(const raw_view & w, const float * x, int64_t m, float * y, int64_t ldy) {
    const int64_t k = w.shape.innermost();
    const panel_rows to_panels{
        [&](int64_t r, int64_t k0, int64_t kc, void * dst, pack_scratch &) {
            gemm_pack::split_f16_row(reinterpret_cast<const uint16_t *>(w.row(r)) + k0, kc, static_cast<uint16_t *>(dst));
        },
        [&](int64_t r, int64_t k0, int64_t kc, void * at, pack_scratch &) {
            return gemm_pack::transpose_group_f16_split(w.row(r) + k0 * 2, w.row_stride(), kc, at);
        },
        true, 3};
    linear_panels_amx(w, pack_for_amx(x, m, k, true), m, k, y, ldy, to_panels);
}

// Pieces of K in which 16 quantized rows are dequantized to F32 on their way into BF16 panels:
// whole super-blocks, 32 KiB of F32 (in L1). Repacked rows go whole.
constexpr int64_t k_bf16_group_piece = 512;

// Activations to BF16 once, then weight rows into panels (BF16 rows as stored) or, where oneDNN
// takes no panels, slabs of rows dequantized to BF16 (BF16 weights as mapped), one BF16 GEMM each.
void matmul_context::linear_bf16(const raw_view & w, const float * x, int64_t m, float * y, int64_t ldy) {
    const int64_t n = w.shape.rows();
    const int64_t k = w.shape.innermost();
    const slab_conversions & conv = slab_conversions_here();
    // K in whole blocks of 32: BF16 rows go from the file into the panels as they are; with
    // AVX512-BF16, other rows 16 at a time through F32 pieces, rounded as they are transposed.
    const bool whole_words = k % (2 * gemm_pack::block_words) == 0;
    const bool amx = prefill_panels && whole_words && amx::bf16_available();
    if (w.type == dtype::f16) {
        // Only as two BF16 parts on AMX (gemm_pack::transpose_group_f16_split); else exact.
        if (amx) linear_f16_split(w, x, m, y, ldy);
        else linear_f32(w, x, nullptr, m, y, ldy);
        return;
    }
    omp_threads_scope threads(n_threads_);
    const bool direct = w.type == dtype::bf16 && whole_words;
    const bool fused = w.type != dtype::bf16 && whole_words && detail::avx512_bf16_supported();
    const panel_rows to_panels{
        [&](int64_t r, int64_t k0, int64_t kc, void * dst, pack_scratch & s) {
            s.row.resize(size_t(kc));
            conv.to_bf16(w.type, w.row(r) + row_bytes(w.type, k0), s.row.data(), static_cast<uint16_t *>(dst), kc);
        },
        [&](int64_t r, int64_t k0, int64_t kc, void * at, pack_scratch & s) {
            if (direct) gemm_pack::transpose_group(w.row(r) + k0 * 2, w.row_stride(), kc / 2, at);
            if (!fused) return direct;
            // A repacked row keeps its scales ahead of its quants: no piece of it stands alone.
            const int64_t piece = stored_type(w.type) == w.type ? k_bf16_group_piece : kc;
            s.row.resize(size_t(gemm_pack::group_rows * piece));
            for (int64_t p0 = 0; p0 < kc; p0 += piece) { // 16 rows [16, piece] in F32 → panel words from p0 / 2
                const int64_t len = std::min(piece, kc - p0);
                for (int64_t i = 0; i < gemm_pack::group_rows; ++i)
                    dequantize_row(w.type, w.row(r + i) + row_bytes(w.type, k0 + p0), s.row.data() + i * piece, len);
                gemm_pack::transpose_group_bf16(s.row.data(), piece, len,
                                                static_cast<std::byte *>(at) + p0 / 2 * gemm_pack::panel_cols * 4);
            }
            return true;
        },
        w.type == dtype::bf16};
    if (amx) {
        linear_panels_amx(w, pack_for_amx(x, m, k, false), m, k, y, ldy, to_panels);
        return;
    }
    uint16_t * xb = grow(impl_->x_bf16, m * k); // [m, K]
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < m; ++i) conv.activations_to_bf16(x + i * k, xb + i * k, k);
    if (linear_panels(w, dtype::bf16, xb, m, k, y, ldy, to_panels)) return;
    if (w.type == dtype::bf16) {
        run_gemm(dtype::bf16, xb, w.data, n, k, m, y, ldy, false);
        return;
    }
    const int64_t slab_rows = balanced_slab_rows(n, k * int64_t(sizeof(uint16_t)));
    uint16_t * slab = grow(impl_->slab_bf16, slab_rows * k); // [rows, K]
    for (int64_t r0 = 0; r0 < n; r0 += slab_rows) {
        const int64_t rows = std::min(slab_rows, n - r0);
#pragma omp parallel
        {
            std::vector<float> row(static_cast<size_t>(k)); // a few KiB per thread per slab
#pragma omp for schedule(static)
            for (int64_t r = 0; r < rows; ++r) conv.to_bf16(w.type, w.row(r0 + r), row.data(), slab + r * k, k);
        }
        run_gemm(dtype::bf16, xb, slab, rows, k, m, y + r0, ldy, false);
    }
}

void matmul_context::linear_many(std::span<const row_product> products, const float * x, int64_t m) {
    const profile::scope timed(profile::op::matmul);
    if (m <= 0) return;
    // Products below their GEMM crossover (all of them in decode) go through the row kernels
    // together, the rest through GEMMs.
    const auto rows_first = [&](const row_product & p) { return m < gemm_from(p.w.type); };
    std::array<row_product, k_max_row_products> by_path;
    if (std::any_of(products.begin(), products.end(), rows_first)) {
        if (products.size() > by_path.size())
            throw_error(status::invalid_argument, "matmul: linear_many: {} products, at most {}", products.size(),
                        by_path.size());
        const auto end = std::copy(products.begin(), products.end(), by_path.begin());
        const auto gemms = std::stable_partition(by_path.begin(), end, rows_first);
        matmul_rows_many(std::span(by_path.begin(), gemms), x, m, impl_->quant_scratch, n_threads_);
        products = std::span(gemms, end);
        if (products.empty()) return;
    }
    // Weights that all take the q8 path with one activation format (Q8_0 blocks, or Q8_K ones,
    // with the block sums when any of them has offsets; Q2_K's sums per half only with Q2_K)
    // share one quantization of x.
    const auto q8_format = [&](const raw_view & w) -> std::optional<int> {
        if (prefill_gemm_for(prefill, w.type, m) != prefill_gemm::q8) return std::nullopt;
        return w.type == dtype::q2_k ? 2 : int(q8::super_blocks(w.type));
    };
    const bool shared = !products.empty() && q8_format(products.front().w) &&
                        std::all_of(products.begin(), products.end(), [&](const row_product & p) {
                            return q8_format(p.w) == q8_format(products.front().w) &&
                                   p.w.shape.innermost() == products.front().w.shape.innermost() &&
                                   (!p.x || p.x == x);
                        });
    if (!shared) {
        for (const auto & p : products) linear(p.w, p.x ? p.x : x, m, p.y, p.ldy ? p.ldy : p.w.n_rows());
        return;
    }
    dtype format = products.front().w.type;
    for (const auto & p : products)
        if (q8::has_offsets(p.w.type)) format = p.w.type;
    const q8::activations act = quantize_q8(format, x, m, products.front().w.shape.innermost());
    for (const auto & p : products) {
        const int64_t ldy = p.ldy ? p.ldy : p.w.n_rows();
        check_output_stride(ldy, p.w.n_rows());
        multiply_q8(p.w, act, m, p.y, ldy);
    }
}

void matmul_context::linear_int8(const raw_view & w, const float * x, int64_t m, float * y, int64_t ldy) {
    const int64_t n = w.shape.rows();
    const int64_t k = w.shape.innermost();
    const int level = int8_weight_level();
    const slab_conversions & conv = slab_conversions_here();
    auto & im = *impl_;
    omp_threads_scope threads(n_threads_);
    // x [m, K] f32 → u8 [m, K] (zero point 128) and sx [m]
    uint8_t * xq = grow(im.x_u8, m * k);
    float * sx = grow(im.x_scale, m);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < m; ++i) sx[i] = conv.quantize_u8(x + i * k, xq + i * k, k);
    const int64_t slab_rows = balanced_slab_rows(n, k);
    int8_t * wq = grow(im.slab_s8, slab_rows * k);
    float * sw = grow(im.w_scale, slab_rows);
    int32_t * wsum = grow(im.w_sum, slab_rows);
    int32_t * acc = grow(im.acc_s32, m * slab_rows);
    for (int64_t r0 = 0; r0 < n; r0 += slab_rows) {
        const int64_t rows = std::min(slab_rows, n - r0);
        // W rows [r0, r0 + rows) → s8 [rows, K], sw [rows], wsum [rows]
#pragma omp parallel
        {
            std::vector<float> deq(static_cast<size_t>(k)); // one row; a few KiB per thread per slab
#pragma omp for schedule(static)
            for (int64_t r = 0; r < rows; ++r)
                sw[r] = conv.requantize_s8(w.type, w.row(r0 + r), deq.data(), wq + r * k, k, level, wsum + r);
        }
        {
            dnnl::memory src_mem({dims{m, k}, dt::u8, dims{k, 1}}, im.engine, xq);
            dnnl::memory w_mem({dims{k, rows}, dt::s8, dims{1, k}}, im.engine, wq);
            dnnl::memory dst_mem({dims{m, rows}, dt::s32, dims{rows, 1}}, im.engine, acc);
            im.int8_primitive(k, rows).execute(
                im.stream, {{DNNL_ARG_SRC, src_mem}, {DNNL_ARG_WEIGHTS, w_mem}, {DNNL_ARG_DST, dst_mem}});
            im.stream.wait();
        }
        // y[i, r0 + r] = sx[i] · sw[r] · (acc[i, r] − 128 · wsum[r])
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < m; ++i) conv.dequantize_acc(acc + i * rows, sx[i], sw, wsum, y + i * ldy + r0, rows);
    }
}

// Activations into Q8_0 blocks once; then each thread packs chunks of the kernel's weight rows
// (L2-sized) and runs every activation row against them (ops/q8_gemm.hpp).
void matmul_context::linear_q8(const raw_view & w, const float * x, int64_t m, float * y, int64_t ldy) {
    multiply_q8(w, quantize_q8(w.type, x, m, w.shape.innermost()), m, y, ldy);
}

q8::activations matmul_context::quantize_q8(dtype t, const float * x, int64_t m, int64_t k) {
    auto & im = *impl_;
    const q8::quantize_fn own = q8::chunk_kernel()->quantize;
    const q8::quantize_fn quantize = own ? own : q8::quantize_activations;
    omp_threads_scope threads(n_threads_);
    const int64_t nb = k / k_qk;
    uint8_t * xq = grow(im.x_q8, m * k);                                  // [m, K]
    float * xd = grow(im.x_q8_scale, m * nb);                             // [m, K/32]
    const int64_t spb = q8::sums_per_block(t);
    int16_t * xs = spb ? grow(im.x_q8_sum, m * nb * spb) : nullptr; // [m, K/32 · spb]
#pragma omp parallel
    { // one contiguous share of the rows per thread
        const int64_t parts = omp_get_num_threads(), part = omp_get_thread_num();
        const int64_t i0 = m * part / parts, i1 = m * (part + 1) / parts;
        quantize(t, x + i0 * k, i1 - i0, k, xq + i0 * k, xd + i0 * nb, xs ? xs + i0 * nb * spb : nullptr);
    }
    return {xq, xd, xs, k};
}

void matmul_context::multiply_q8(const raw_view & w, const q8::activations & act, int64_t m, float * y, int64_t ldy) {
    const int64_t n = w.shape.rows();
    const q8::kernel & kernel = *q8::kernel_for(w.type); // prefill_gemm_for checked it
    auto & im = *impl_;
    omp_threads_scope threads(n_threads_);
    const size_t chunk_bytes = kernel.scratch_bytes(act.k);
    const int64_t chunk_cols = kernel.chunk_cols;
    std::byte * scratch = grow(im.q8_chunks, int64_t(chunk_bytes) * omp_get_max_threads());
#pragma omp parallel
    {
        std::byte * mine = scratch + chunk_bytes * size_t(omp_get_thread_num());
        // Guided: each thread takes long runs of chunks (the next chunk's prefetch stays right
        // within a run), then shorter ones, so a thread the host slows down is not waited for at
        // the end. On a shared 2-core Zen 4: linear 512 x 1536 x 8960 Q8_0 290-320 against
        // 278-296 GMAC/s for static (6 alternating pairs); pp512 alike when the machine was calm
        // (Q4_0 225-230 either way), +7 % median over 6 pairs when it was not.
#pragma omp for schedule(guided)
        for (int64_t c0 = 0; c0 < n; c0 += chunk_cols)
            kernel.run(w.type, w.row(c0), w.row_stride(), std::min(chunk_cols, n - c0), act, m, y + c0, ldy, mine);
    }
}

prefill_gemm matmul_context::linear_t_gemm(dtype t) const {
    if (t == dtype::f32 || t == dtype::f16 || prefill_gemm_for(prefill_gemm::bf16, t) != prefill_gemm::bf16)
        return prefill_gemm::f32;
    switch (prefill) {
    case prefill_gemm::bf16: return prefill_gemm::bf16;
    case prefill_gemm::automatic:
    case prefill_gemm::q8:
    case prefill_gemm::int8: return prefill_gemm_native(prefill_gemm::bf16) ? prefill_gemm::bf16 : prefill_gemm::f32;
    case prefill_gemm::f32: break;
    }
    return prefill_gemm::f32;
}

void matmul_context::linear_t(const raw_view & w, const float * x, int64_t m, float * y, int64_t ldy) {
    const row_product product{w, y, ldy};
    linear_t_many(std::span(&product, 1), x, m);
}

void matmul_context::linear_t_many(std::span<const row_product> products, const float * x, int64_t m) {
    const profile::scope timed(profile::op::matmul);
    if (m <= 0 || products.empty()) return;
    const int64_t k = products.front().w.shape.rows();
    for (const row_product & p : products) {
        if (p.w.shape.rows() != k || (p.x && p.x != x))
            throw_error(status::invalid_argument, "matmul: linear_t_many: products of K {} and {}, or other inputs", k,
                        p.w.shape.rows());
        check_output_stride(p.ldy ? p.ldy : p.w.shape.innermost(), p.w.shape.innermost());
    }
    const slab_conversions & conv = slab_conversions_here();
    omp_threads_scope threads(n_threads_);
    const uint16_t * xb = nullptr; // x [m, K] in BF16, once a product asks for it
    for (const row_product & p : products) {
        const raw_view & w = p.w;
        const int64_t n = w.shape.innermost(), ldy = p.ldy ? p.ldy : n;
        // The whole weight at once: these are per-head blocks of a few hundred KiB.
        if (linear_t_gemm(w.type) == prefill_gemm::bf16) {
            if (!xb) {
                uint16_t * to = grow(impl_->x_bf16, m * k);
#pragma omp parallel for schedule(static)
                for (int64_t i = 0; i < m; ++i) conv.activations_to_bf16(x + i * k, to + i * k, k);
                xb = to;
            }
            uint16_t * wb = grow(impl_->slab_bf16, k * n);                    // [K, N]
            float * rows = grow(impl_->slab, n * int64_t(omp_get_max_threads())); // a dequantized row per thread
#pragma omp parallel for schedule(static) if (k * n >= (1 << 16))
            for (int64_t r = 0; r < k; ++r)
                conv.to_bf16(w.type, w.row(r), rows + n * omp_get_thread_num(), wb + r * n, n);
            run_gemm(dtype::bf16, xb, wb, n, k, m, p.y, ldy, true);
            continue;
        }
        const float * wf = reinterpret_cast<const float *>(w.data);
        if (w.type != dtype::f32) {
            float * deq = grow(impl_->slab, k * n); // [K, N]
#pragma omp parallel for schedule(static) if (k * n >= (1 << 16))
            for (int64_t r = 0; r < k; ++r) dequantize_row(w.type, w.row(r), deq + r * n, n);
            wf = deq;
        }
        run_gemm(dtype::f32, x, wf, n, k, m, p.y, ldy, true);
    }
}

void matmul_context::linear_t_one_row(std::span<const row_product> products) {
    const profile::scope timed(profile::op::matmul);
    int64_t widest = 0, work = 0;
    for (const auto & p : products) {
        if (!p.x) throw_error(status::invalid_argument, "matmul: linear_t_one_row: a product has no input");
        widest = std::max(widest, p.w.shape.innermost());
        work += p.w.shape.numel();
    }
    omp_threads_scope threads(n_threads_);
    float * rows = grow(impl_->slab, widest * omp_get_max_threads()); // a dequantized row per thread
    const auto count = int64_t(products.size());
#pragma omp parallel for schedule(static) if (work >= (1 << 16))
    for (int64_t j = 0; j < count; ++j) {
        const row_product & p = products[size_t(j)];
        const int64_t k = p.w.shape.rows(), n = p.w.shape.innermost();
        float * row = rows + widest * omp_get_thread_num();
        std::fill_n(p.y, n, 0.f);
        for (int64_t i = 0; i < k; ++i) { // y[n] += x[i] · w[i, n]
            const float * wr = reinterpret_cast<const float *>(p.w.row(i));
            if (p.w.type != dtype::f32) {
                dequantize_row(p.w.type, p.w.row(i), row, n);
                wr = row;
            }
            const float xi = p.x[i];
#pragma omp simd
            for (int64_t c = 0; c < n; ++c) p.y[c] += xi * wr[c];
        }
    }
}

} // namespace frugal::ops
