// matmul.hpp - Y = X · Wᵀ for a weight stored in any supported dtype.
//
// Paths, chosen per call:
//   - few rows (decode; m < gemm_from(the weight's type)): ops::matmul_rows, which reads the
//     weight in place in any dtype (a GEMM call costs more than the work here).
//   - otherwise (prefill) as matmul_context::prefill says: weight rows dequantized to F32
//     (exact; F32 weights too) or BF16, or requantized to int8, in scratch, and a oneDNN matmul;
//     or (q8) chunks of 32 weight rows packed for frugal's own VNNI kernel. F32 and BF16 go, 128
//     rows at a time per thread, straight into the panels oneDNN's AVX-512 matmul reads
//     (ops/gemm_pack.hpp, linear_panels) where it takes them; elsewhere, and for int8, in slabs
//     of rows (F32 and BF16 weights then as mapped, no copy).
// oneDNN primitives are created once per (K, N, ldy, dtype, weight layout) and cached in the
// context, with the row count M left open (DNNL_RUNTIME_DIM_VAL) except for panels, whose
// matmul (brgemm) needs it fixed: one primitive per M there (0.15-0.5 ms to create on Zen 5).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <tuple>
#include <vector>

#include "frugal/tensor_view.hpp"
#include "ops/quant.hpp"

namespace frugal::ops {
namespace q8 {
struct activations;
}
struct gemm_plan;

// Weight types whose prefill may go through the int8 GEMM: 4- and 5-bit formats, whose own
// rounding dwarfs a requantization to int8 rows. Q6_K, Q8_0 and F16/BF16 would lose precision to
// it (Q6_K measured: +5.8 % KL on a Q4_K_M file with it, +3.2 % without; docs/PERF.md).
bool int8_prefill_type(dtype t);

// How prefill (m >= gemm_from(the weight's type)) multiplies a weight that is not F32.
enum class prefill_gemm {
    // What runs fastest here for the weight's type and the call's row count (prefill_gemm_for):
    // q8 where the CPU has a q8 kernel for the type, else bf16 where oneDNN runs BF16 natively,
    // else f32; and bf16 from amx_bf16_from(type) rows on CPUs with AMX, whose tiles
    // (ops/amx_gemm.hpp) leave the q8 kernel's vpdpbusd behind once there are rows enough to pay
    // for dequantizing the weight to BF16 (a MoE expert's few rows stay on q8).
    automatic,
    // Slabs dequantized to F32; activations rounded as the row kernels (and llama.cpp) round
    // them: the same products as decode, summed in another order.
    f32,
    // Slabs dequantized to BF16, activations converted to BF16, oneDNN's BF16 GEMM (f32
    // accumulation): twice the F32 rate where the CPU has AVX512-BF16 or AMX. Rounding the
    // weights costs less than the finer activations gain over llama.cpp's Q8_0/Q8_K blocks: KL
    // divergence from the F32 model 30 % lower on Q8_0, 0.3-1 % lower on Q4_0 and Q4_K_M
    // (docs/PERF.md). F16 stays on f32 (BF16 drops 3 of its mantissa bits: 60x the KL) except on
    // AMX, where weights and activations go as hi + lo BF16 parts, three products each
    // (matmul_context::linear_f16_split: finer than llama.cpp's F16 activations); Q4_1 and Q5_1
    // stay on f32 (their block offsets ride along as extra F32 columns). Without a native BF16
    // matmul the operands are widened to F32 after rounding: same values, slow (tests).
    bf16,
    // 4- and 5-bit weights (int8_prefill_type) through a u8 × s8 GEMM; other types as the
    // default does them.
    int8,
    // Weights in llama.cpp's block arithmetic with integer block sums (ops/q8_gemm.hpp): the f32
    // path's products in another order, at an integer rate: q8::supports' types on AVX-512 VNNI
    // and AVX-VNNI; all but the 8-bit ones (Q8_0, IQ4_NL, IQ4_XS) on AVX2 (1.3-1.8x the f32
    // path there).
    // Where the CPU's kernel does not take a type it takes the f32 path (the same arithmetic);
    // types q8 never takes go as the default does them.
    q8,
};
// The default: automatic; the environment variable FRUGAL_PREFILL_GEMM=auto|f32|bf16|int8|q8,
// read once, overrides it (e.g. to run the test suite on the path another CPU would take).
prefill_gemm default_prefill_gemm();
const char * prefill_gemm_name(prefill_gemm g);
// Whether g runs as itself on this CPU for some weight type: q8 needs a q8 kernel (AVX-512 VNNI
// or AVX2; without one, its weight types take f32, the same arithmetic) and bf16 a native
// oneDNN BF16 matmul (without it, the same rounded operands go through F32); f32, int8 and
// automatic always do.
bool prefill_gemm_native(prefill_gemm g);
// The GEMM that prefill of a weight of type t over m rows takes on this CPU when g is asked for
// (m matters to automatic only; 0: a batch too small for AMX to pay, as decode's are).
prefill_gemm prefill_gemm_for(prefill_gemm g, dtype t, int64_t m = 0);
// Rows from which automatic takes bf16 for weight type t (of those bf16 takes) on a CPU with
// AMX: each call dequantizes the whole weight to BF16, which the K-quants' scales make dearer.
// Sapphire Rapids VM, 2 threads, 1.5B files, pp N t/s q8 / bf16: Q8_0 at 64 181 / 171, at 96
// 198 / 216-230; Q4_0 at 96 222-233 / 276-281; Q4_K_M at 96 216-224 / 193-199, at 128 222-225 /
// 235-239; F16 (f32 / bf16, its split) at 32 59 / 57, at 64 81 / 95 (docs/PERF.md, "Sapphire
// Rapids").
int64_t amx_bf16_from(dtype t);

class matmul_context {
public:
    explicit matmul_context(int n_threads);
    ~matmul_context();
    matmul_context(const matmul_context &) = delete;
    matmul_context & operator=(const matmul_context &) = delete;

    int n_threads() const { return n_threads_; }
    void set_n_threads(int n) { n_threads_ = n; }
    // Row count from which every weight goes through a GEMM, whatever its path's crossover
    // (gemm_from): tests lower it to force the GEMM paths.
    int64_t small_batch = 48;
    // > 0: the row count from which every weight goes through a GEMM, in place of the measured
    // crossovers and small_batch (frugal bench --gemm-from: how the crossovers are measured).
    int64_t gemm_from_rows = 0;
    // The row count from which weight type t goes through a GEMM instead of matmul_rows (capped
    // by small_batch): the crossover measured for its path here, the q8 kernel's
    // (q8::kernel::gemm_from: 8 rows for Q4_0 and Q8_0 on AVX-512 VNNI, where 16 prompt tokens of
    // a Q4_0 file ran 3.5x faster packed than through the row kernels of the time; 40 for Q6_K
    // on AVX2), k_panels_gemm_from for F32 and BF16 GEMMs on oneDNN's panels, k_f16_slab_gemm_from
    // for F16 without them, else k_default_gemm_from. The GEMM path pays a fixed cost (packing or
    // dequantizing the whole weight) that the row kernels do not.
    int64_t gemm_from(dtype t);
    // Measured on a 2-core AVX2 machine with the 1.5B Qwen2 Q8_0 model on the f32 path: the row
    // kernels win up to ~24 rows (16 rows: 27 vs 23 tokens/s; 32 rows: 29 vs 33); with the AVX2
    // code on Zen 5 (FRUGAL_MAX_CPU_ISA=avx2) alike (16: 67 / 59, 24: 68 / 70).
    static constexpr int64_t k_default_gemm_from = 24;
    // F16 on the f32 path without panels, whose row dots convert every half: with the AVX2 code on
    // Zen 5, 1.5B F16, pp N t/s rows / GEMM: at 12 rows 44.6 / 46.9, 16 45.1 / 52.0, 24 47.1 / 54.5.
    static constexpr int64_t k_f16_slab_gemm_from = 12;
    // IQ4_XS and repacked IQ4_NL on the f32 path without panels (AVX2 without AVX-VNNI, where no
    // q8 kernel takes their 8-bit levels): their integer row loops beat dequantizing for the GEMM
    // up to about small_batch. Zen 4 under FRUGAL_MAX_CPU_ISA=avx2, 1.5B files, 2 rounds, pp N
    // t/s rows / GEMM: IQ4_XS at 24 64-67 / 49-50, at 40 64-68 / 59-63; IQ4_NL at 24 59-64 /
    // 44-45, at 40 62-64 / 54. (Q8_0 at 32: 49-50 / 58-59; it keeps k_default_gemm_from.)
    static constexpr int64_t k_iq4_rows_gemm_from = 48;
    // Measured on Zen 5, 2 threads, whole 1.5B Qwen2 files, pp N t/s rows / panels: F16 at 6
    // rows 39 / 41, at 8 41 / 50, at 16 45 / 81; BF16 at 6 29 / 35, at 8 30 / 64; 8-layer Llama-8B
    // F16 at 8 32 / 43.
    static constexpr int64_t k_panels_gemm_from = 8;
    // int8 is opt-in: oneDNN's int8 GEMM runs at about twice its F32 rate, but its per-token
    // activation scales are coarser than llama.cpp's per-32 blocks (next-token KL divergence
    // +2-3 %, docs/PERF.md).
    prefill_gemm prefill = default_prefill_gemm();
    // F32 and BF16 prefill GEMMs through oneDNN's panels (ops/gemm_pack.hpp) where it takes them;
    // false: slabs of rows, as on CPUs where it does not (tests run both).
    bool prefill_panels = true;
    // Whether oneDNN takes panels for F32 (or BF16) GEMMs on this CPU: where it does not, F32
    // and BF16 prefill goes through slabs of rows.
    bool panels_available(dtype t);

    // y[m, ldy] (first N columns written) = x[m, K] · wᵀ, w = [N, K].
    void linear(const raw_view & w, const float * x, int64_t m, float * y, int64_t ldy);
    void linear(const raw_view & w, const float * x, int64_t m, float * y) { linear(w, x, m, y, w.shape.rows()); }
    // linear() on an input the caller no longer needs: x may be overwritten (with the
    // activations as w's type rounds them), which spares the f32 path its own [m, K] copy.
    void linear_consuming(const raw_view & w, float * x, int64_t m, float * y);

    // linear() for several weights, each of x[m, K] or of its own input (row_product::x): those
    // below their gemm_from in one conversion per input and one parallel region
    // (ops::matmul_rows_many), the others one GEMM each (q8 weights of one activation format and
    // one input: one conversion).
    void linear_many(std::span<const row_product> products, const float * x, int64_t m);

    // y[m, ldy] (first N columns written) = x[m, K] · w for a weight stored the other way
    // round, w = [K, N] (MLA multiplies some per-head blocks against their stored orientation).
    // There is no vec_dot pairing of activation and weight blocks in this orientation: the
    // weight is dequantized whole and the product is a oneDNN GEMM, in F32 or BF16 as
    // linear_t_gemm says.
    void linear_t(const raw_view & w, const float * x, int64_t m, float * y, int64_t ldy);
    // linear_t() for several weights of one K on the same x (row_product::x unset, or x): x is
    // converted to BF16 once for all the products that take BF16.
    void linear_t_many(std::span<const row_product> products, const float * x, int64_t m);
    // The GEMM linear_t takes for a weight of type t: BF16 (weight and x rounded to BF16, F32
    // sums) for the types the bf16 path takes (not F16, Q4_1, Q5_1 or F32) when prefill asks for bf16,
    // or when it asks for q8 or int8 (which have no path in this orientation) and oneDNN runs
    // BF16 natively here; else F32 (exact). A block-quantized weight loses at most 2^-9 of each
    // value and x as much, less than llama.cpp's Q8_0 rounding of the other operand of the same
    // product (MLA's absorbed form): on a V3-shaped Q4_0 file, KL divergence from the F16 model
    // 0.4022 in BF16 and in F32 (llama.cpp 0.4021), where requantizing the weight to Q8_0 for the
    // q8 kernel gave 0.4096 (docs/PERF.md). Twice the F32 rate on AVX-512 BF16.
    prefill_gemm linear_t_gemm(dtype t) const;
    // linear_t() of one row for several weights at once (a decode step's per-head blocks of MLA
    // files that store them [in, out]): p.y[N] = p.x[K] · p.w for each product, the products
    // split over the threads in one parallel region, each weight dequantized a row at a time
    // and accumulated in F32 in row order (no [K, N] copy, no GEMM call per head).
    void linear_t_one_row(std::span<const row_product> products);

    // The oneDNN GEMM alone: y[m, ldy] = x[m, k] · wᵀ with w an [n, k] row-major matrix of
    // F32 (or BF16, with x converted to BF16). Exposed for tests.
    void gemm(dtype wtype, const void * w, int64_t n, int64_t k, const float * x, int64_t m, float * y, int64_t ldy);

private:
    // x_scratch: x itself when the caller gave it up (linear_consuming), else null.
    void linear_any(const raw_view & w, const float * x, float * x_scratch, int64_t m, float * y, int64_t ldy);
    void linear_f32(const raw_view & w, const float * x, float * x_scratch, int64_t m, float * y, int64_t ldy);
    void linear_bf16(const raw_view & w, const float * x, int64_t m, float * y, int64_t ldy);
    void linear_int8(const raw_view & w, const float * x, int64_t m, float * y, int64_t ldy);
    void linear_q8(const raw_view & w, const float * x, int64_t m, float * y, int64_t ldy);
    // linear_q8's two steps: x [m, K] in the q8 kernels' activation format for weight type t (in
    // impl_'s buffers, valid until the next call), then one weight against them.
    q8::activations quantize_q8(dtype t, const float * x, int64_t m, int64_t k);
    void multiply_q8(const raw_view & w, const q8::activations & act, int64_t m, float * y, int64_t ldy);
    // y = x · wᵀ with x and w already in wtype (F32 or BF16); w_kn: w is [k, n] row-major
    // instead of [n, k].
    void run_gemm(dtype wtype, const void * x, const void * w, int64_t n, int64_t k, int64_t m, float * y, int64_t ldy,
                  bool w_kn);
    // y = x · wᵀ for x[m, k] in t (F32 or BF16) through panels (ops/gemm_pack.hpp), w's rows
    // written there as `rows` says; false (nothing done) where oneDNN takes no panels here.
    struct panel_rows;
    bool linear_panels(const raw_view & w, dtype t, const void * x, int64_t m, int64_t k, float * y, int64_t ldy,
                       const panel_rows & rows);
    // linear_panels in BF16 on AMX tiles (ops/amx_gemm.hpp), x in amx::pack_activations' order
    // (pack_for_amx; split as rows.split says); only where amx::bf16_available() and K % 32 == 0.
    const uint16_t * pack_for_amx(const float * x, int64_t m, int64_t k, bool split);
    void linear_f16_split(const raw_view & w, const float * x, int64_t m, float * y, int64_t ldy);
    void linear_panels_amx(const raw_view & w, const uint16_t * packed, int64_t m, int64_t k, float * y, int64_t ldy,
                           const panel_rows & rows);
    // Rows [c0, c0 + cols) of w, elements [k0, k0 + kc), into the panels at `panel` (element
    // bytes a value, K padded to kcp), 16 at a time (through `staging` where rows.group does not
    // take them); columns past `cols` up to the last panel's end zeros.
    struct pack_scratch;
    static void write_chunk(const panel_rows & rows, int64_t element, std::byte * panel, std::byte * staging, int64_t c0,
                            int64_t cols, int64_t k0, int64_t kc, int64_t kcp, pack_scratch & ps);
    struct impl;
    std::unique_ptr<impl> impl_;
    int n_threads_;
};

} // namespace frugal::ops
