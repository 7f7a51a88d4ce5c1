// quant.hpp - kernels on weights stored as F32/F16/BF16/Q8_0/Q4_0/Q4_1/Q5_0/Q5_1/IQ4_NL/IQ4_XS and the
// K-quants Q2_K/Q3_K/Q4_K/Q5_K/Q6_K
// (MODEL-SPEC.md §3.6), and on Q4_0 repacked at load (repack_rows).
//
// Numerics follow llama.cpp's CPU backend so greedy decoding agrees token for token: a float
// activation row is first converted to the weight type's "vec_dot_type" and the dot product is
// taken in that domain:
//   F32 -> F32, F16 -> F16, BF16 -> BF16 (round to nearest even),
//   Q8_0, Q4_0 (and repacked), Q5_0, IQ4_NL -> Q8_0 blocks (per 32: d = amax/127 stored as fp16, q = round(x * 127/amax)),
//   Q4_1, Q5_1 -> Q8_1 blocks (Q8_0's d and q, plus s = d * sum(q) as fp16 for their offsets m),
//   Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_XS -> Q8_K blocks (per 256: fp32 d, int8 q, int16 sums of each 16 q).
// Integer sums inside a block are exact; only the float accumulation order differs from ggml.
//
// AVX2+FMA+F16C kernels are chosen at run time when the CPU has them, else portable scalar ones.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "frugal/dtype.hpp"
#include "frugal/tensor_view.hpp"

namespace frugal::ops {

// ggml's block_q8_K: the activation format for the K-quants. Not a GGUF storage type.
struct block_q8_k {
    float d;                   // fp32 scale (not fp16): y = d * qs
    int8_t qs[k_qk_k];
    int16_t bsums[k_qk_k / 16]; // sum of each 16 consecutive qs; lets the dots fold in mins/offsets
};
static_assert(sizeof(block_q8_k) == 292);

// ggml's block_q8_1: the activation format for Q4_1 and Q5_1. Not a GGUF storage type.
struct block_q8_1 {
    uint16_t d;        // fp16 scale: y = d * qs
    uint16_t s;        // fp16 of d * sum(qs), d before its rounding to fp16; meets Q4_1's and Q5_1's m
    int8_t qs[k_qk];
};
static_assert(sizeof(block_q8_1) == 36);

// The type a repacked layout was made from (repacked_type's inverse); t itself for the others.
constexpr dtype stored_type(dtype t) {
    switch (t) {
    case dtype::q4_0_repacked: return dtype::q4_0;
    case dtype::q5_0_repacked: return dtype::q5_0;
    case dtype::iq4_nl_repacked: return dtype::iq4_nl;
    case dtype::q4_1_repacked: return dtype::q4_1;
    case dtype::q5_1_repacked: return dtype::q5_1;
    default: return t;
    }
}

// The 32-element types with an offset m per block (y = d · q + m), whose activations are Q8_1,
// in either layout.
constexpr bool has_block_offsets(dtype t) { return stored_type(t) == dtype::q4_1 || stored_type(t) == dtype::q5_1; }

// Every entry point throws frugal::error(status::invalid_argument) when t is not one of the
// supported types or n is not a multiple of t's block size.

// Dequantizes one row of n elements stored as type t.
void dequantize_row(dtype t, const void * src, float * dst, int64_t n);

// Bytes of the activation row (vec_dot_type) that goes with weight type t for n elements.
size_t activation_bytes(dtype t, int64_t n);

// Converts x[n] into the vec_dot_type of weight type t; dst holds activation_bytes(t, n).
void quantize_activation(dtype t, const float * x, void * dst, int64_t n);

// Dot product of one weight row (type t, n elements) with an activation row from quantize_activation.
float dot_row(dtype t, const void * w_row, const void * act, int64_t n);

// y[r] = dot(W row r, x) for every row of w (w viewed as [rows, n]). x is converted once into
// scratch (grown as needed, so no allocation once warm); rows are split over n_threads OpenMP
// threads (n_threads <= 0: all).
void matvec(const raw_view & w, const float * x, float * y, std::vector<std::byte> & scratch, int n_threads);

// Y[m, rows] = X[m, n] · W^T for a small batch (m up to ~16): each weight row is read from memory
// once and dotted with all m activations while it is hot in L1. Row i of Y starts at y + i * ldy
// (ldy = 0: rows, i.e. Y contiguous).
void matmul_rows(const raw_view & w, const float * x, int64_t m, float * y, std::vector<std::byte> & scratch,
                 int n_threads, int64_t ldy = 0);

// One product of matmul_rows_many: y[i * ldy + r] = dot(w row r, x row i) (ldy = 0: w's rows),
// x the product's own input [m, K] when it has one, else the call's.
struct row_product {
    raw_view w;
    float * y;
    int64_t ldy = 0;
    const float * x = nullptr;
};

// At most this many products per matmul_rows_many call.
inline constexpr size_t k_max_row_products = 32;

// matmul_rows for several weights: Q, K and V, or gate and up, which multiply the same x; an
// attention layer's per-head blocks, or a MoE layer's experts, each on its own input. Each input
// is converted once per activation format and row length (Q8_0 and Q4_0 share one), and all the
// products run in one parallel region, split by weight bytes over the threads: fewer fork/joins
// per token, each of which costs a time slice when another process holds a core. Each row's
// result is the one matmul_rows gives, however the products are grouped.
void matmul_rows_many(std::span<const row_product> products, const float * x, int64_t m,
                      std::vector<std::byte> & scratch, int n_threads);

// Weight quantizers with ggml's reference rounding (quantize_row_*_ref), for tests and tools:
// F32, F16, BF16, Q8_0, Q4_0. The K-quants' search-based quantizers, and those of the fallback
// types Q4_1, Q5_0, Q5_1 and IQ4_NL, are not provided.
void quantize_row_weights(dtype t, const float * x, void * dst, int64_t n);

// Weight layouts the loader rewrites into for faster decode kernels, with the same bytes per
// row (so a repacked copy costs exactly what the original did): Q4_0 -> q4_0_repacked, and so
// Q4_1, Q5_0, Q5_1 and IQ4_NL (dtype.hpp). Returns t itself when t has none.
dtype repacked_type(dtype t);
// Whether decode on this CPU reads repacked_type(t) faster than t as stored: where the SIMD
// kernels that would decode t have a loop for its repacked layout. Today Q4_0, Q4_1, Q5_0, Q5_1
// and IQ4_NL with AVX-512 VNNI, Q4_0, Q5_0 and IQ4_NL with AVX2.
bool repacking_speeds_decode(dtype t);
// Rewrites `rows` rows of n elements from type t into repacked_type(t)'s layout; src and dst
// must not overlap. Throws status::invalid_argument when t has no repacked layout.
void repack_rows(dtype t, const void * src, void * dst, int64_t rows, int64_t n);

namespace detail {
// Test hook: true forces the portable scalar kernels, false restores run-time dispatch.
void force_scalar(bool on);
// force_scalar(on) for a scope; run-time dispatch comes back when it ends, however it ends.
struct force_scalar_scope {
    explicit force_scalar_scope(bool on) { force_scalar(on); }
    ~force_scalar_scope() { force_scalar(false); }
    force_scalar_scope(const force_scalar_scope &) = delete;
    force_scalar_scope & operator=(const force_scalar_scope &) = delete;
};
// The instruction sets the kernels are chosen from, in order. FRUGAL_MAX_CPU_ISA (read once, like
// oneDNN's ONEDNN_MAX_CPU_ISA, which it also sets: ops/matmul.cpp) caps them: "avx2" runs an
// AVX-512 machine on the AVX2 kernels, as an AVX2-only CPU would (how CI tests that path end to
// end), "avx2_vnni" on those with AVX-VNNI where the CPU has it (as Intel's client cores without
// AVX-512), "baseline" on the portable ones; "avx512" or unset: whatever the CPU has.
enum class cpu_isa { baseline, avx2, avx2_vnni, avx512 };
// The cap named by text (the variable's values above, in any case), nullopt for anything else.
std::optional<cpu_isa> parse_cpu_isa(std::string_view text);
// FRUGAL_MAX_CPU_ISA's cap; an unknown value is logged and ignored.
cpu_isa max_cpu_isa();
// The widest kernels in use here: "avx512_vnni", "avx512f" (attention and SwiGLU only),
// "avx2_vnni" (AVX2 with AVX-VNNI: the q8 prefill kernel), "avx2" or "baseline" (the CPU's,
// within the cap; force_scalar does not change it).
const char * kernel_isa_name();
// Whether calls are currently served by the AVX2 kernels (or, where the CPU has them and the type
// has one, the AVX-512 VNNI ones: avx512_vnni_supported()).
bool avx2_active();
bool avx512_vnni_supported();
// AVX-VNNI (vpdpbusd on 256-bit registers) with AVX2 on this CPU, within the cap.
bool avx_vnni_supported();
// AVX-512 F (with AVX2, FMA, F16C) on this CPU, its ZMM state saved by the OS: attention's kernels.
bool avx512f_supported();
// AVX-512 BF16 (vdpbf16ps) with AVX-512 F on this CPU: attention's BF16 products.
bool avx512_bf16_supported();
// Whether this CPU is Intel's (CPUID's "GenuineIntel").
bool intel_cpu();
// Whether this CPU runs each zmm operation as two 256-bit halves, as AMD's Zen 4 (family 19h)
// does: its AVX-512 row loops then cost twice as many cycles per operation as on a Zen 5, which
// moves the point where a GEMM's packing pays off (q8_gemm_avx512.cpp's crossovers).
bool avx512_in_halves();
// Whether single-row products of weight type t run the kernel's own row loop (dot_rows).
bool decode_row_loop(dtype t);
} // namespace detail

} // namespace frugal::ops
