// quant.cpp - validation, run-time kernel selection and the threaded row loops.
#include "ops/quant.hpp"

#include <omp.h>
#if defined(__x86_64__) || defined(__i386__)
#  include <cpuid.h>
#endif

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>

#include "ops/quant_kernels.hpp"
#include "util/error.hpp"
#include "util/log.hpp"
#include "util/text.hpp"

namespace frugal::ops {
namespace {

std::atomic<bool> g_force_scalar{false};

bool cpu_has_avx2() {
    // Asked once; the answer cannot change. The builtin also checks that the OS saves YMM state.
    // F16C comes from cpuid directly: not every compiler's __builtin_cpu_supports knows it.
    static const bool has = [] {
        if (detail::max_cpu_isa() < detail::cpu_isa::avx2) return false;
#if defined(__x86_64__) || defined(__i386__)
        __builtin_cpu_init();
        unsigned eax, ebx, ecx, edx;
        const bool f16c = __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & bit_F16C);
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c;
#else
        return false;
#endif
    }();
    return has;
}

bool use_avx2() { return cpu_has_avx2() && !g_force_scalar.load(std::memory_order_relaxed); }

// AVX-512 F on top of AVX2 (attention's kernels). __builtin_cpu_supports reports AVX-512
// features only when the OS saves ZMM state (XCR0).
bool cpu_has_avx512f() {
    static const bool has = [] {
#if defined(__x86_64__)
        __builtin_cpu_init();
        return cpu_has_avx2() && detail::max_cpu_isa() >= detail::cpu_isa::avx512 &&
               __builtin_cpu_supports("avx512f");
#else
        return false;
#endif
    }();
    return has;
}

// AVX-VNNI: CPUID leaf 7, sub-leaf 1, EAX bit 4 (its YMM state is AVX2's, which cpu_has_avx2 checked).
bool cpu_has_avx_vnni() {
    static const bool has = [] {
#if defined(__x86_64__)
        unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
        return cpu_has_avx2() && detail::max_cpu_isa() >= detail::cpu_isa::avx2_vnni &&
               __get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx) && (eax & (1u << 4));
#else
        return false;
#endif
    }();
    return has;
}

// AVX-512 BF16 (vdpbf16ps) on top of AVX-512 F: attention's BF16 products.
bool cpu_has_avx512_bf16() {
    static const bool has = [] {
#if defined(__x86_64__)
        return cpu_has_avx512f() && __builtin_cpu_supports("avx512bf16");
#else
        return false;
#endif
    }();
    return has;
}

// AVX-512 F + BW + VNNI (the decode and q8 prefill kernels).
bool cpu_has_avx512_vnni() {
    static const bool has = [] {
#if defined(__x86_64__)
        return cpu_has_avx512f() && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vnni");
#else
        return false;
#endif
    }();
    return has;
}

// t's AVX-512 VNNI kernels where they run here (the CPU has them, the scalar test switch is off),
// else nullptr.
const detail::kernels * active_avx512_kernels(dtype t) {
    return use_avx2() && cpu_has_avx512_vnni() ? detail::avx512_kernels(t) : nullptr;
}

// Validates (t, n) and returns the kernels to use, SIMD entries over scalar ones where present.
detail::kernels select(dtype t, int64_t n) {
    const detail::kernels * scalar = detail::scalar_kernels(t);
    if (!scalar) throw_error(status::invalid_argument, "quant: unsupported weight type (ggml id {})", uint32_t(t));
    const int64_t bs = traits(t).block_size;
    if (n < 0 || n % bs != 0)
        throw_error(status::invalid_argument,
                    "quant: row length {} is not a non-negative multiple of the {} block size {}", n, dtype_name(t),
                    bs);
    if (!use_avx2()) return *scalar;
    const detail::kernels * v = active_avx512_kernels(t);
    if (!v) v = detail::avx2_kernels(t);
    if (!v) return *scalar;
    // The dots come as one set (a null dot_batch/dot_rows means "loop over the SIMD dot", never
    // "use the scalar one"); a null conversion means the scalar one serves.
    detail::kernels k = *v;
    if (!k.dequantize) k.dequantize = scalar->dequantize;
    if (!k.quantize_act) k.quantize_act = scalar->quantize_act;
    return k;
}

// ggml's quantize_row_q8_0_ref: d = amax/127, q = round-half-away(x / d).
void quantize_q8_0_weights(const float * x, block_q8_0 * y, int64_t nb) {
    for (int64_t ib = 0; ib < nb; ++ib) {
        const float * xb = x + ib * k_qk;
        float amax = 0.f;
        for (int j = 0; j < k_qk; ++j) amax = std::max(amax, std::fabs(xb[j]));
        const float d = amax / 127.f;
        const float id = d != 0.f ? 1.f / d : 0.f;
        y[ib].d = fp32_to_fp16(d);
        for (int j = 0; j < k_qk; ++j) y[ib].qs[j] = int8_t(std::round(xb[j] * id));
    }
}

// ggml's quantize_row_q4_0_ref: the signed extreme maps to -8, q = trunc(x / d + 8.5) capped at 15.
void quantize_q4_0_weights(const float * x, block_q4_0 * y, int64_t nb) {
    for (int64_t ib = 0; ib < nb; ++ib) {
        const float * xb = x + ib * k_qk;
        float amax = 0.f, max = 0.f;
        for (int j = 0; j < k_qk; ++j) {
            if (std::fabs(xb[j]) > amax) {
                amax = std::fabs(xb[j]);
                max = xb[j];
            }
        }
        const float d = max / -8.f;
        const float id = d != 0.f ? 1.f / d : 0.f;
        y[ib].d = fp32_to_fp16(d);
        auto q = [&](int j) { return std::min(15, int(xb[j] * id + 8.5f)); };
        for (int j = 0; j < k_qk / 2; ++j) y[ib].qs[j] = uint8_t(q(j) | q(j + k_qk / 2) << 4);
    }
}

} // namespace

void dequantize_row(dtype t, const void * src, float * dst, int64_t n) { select(t, n).dequantize(src, dst, n); }

size_t activation_bytes(dtype t, int64_t n) {
    select(t, n);
    switch (t) {
    case dtype::f32: return size_t(n) * sizeof(float);
    case dtype::f16:
    case dtype::bf16: return size_t(n) * sizeof(uint16_t);
    case dtype::q8_0:
    case dtype::q4_0:
    case dtype::q4_0_repacked:
    case dtype::q5_0:
    case dtype::q5_0_repacked:
    case dtype::iq4_nl:
    case dtype::iq4_nl_repacked: return size_t(n / k_qk) * sizeof(block_q8_0);
    case dtype::q4_1:
    case dtype::q4_1_repacked:
    case dtype::q5_1:
    case dtype::q5_1_repacked: return size_t(n / k_qk) * sizeof(block_q8_1);
    case dtype::q2_k:
    case dtype::q3_k:
    case dtype::q4_k:
    case dtype::q5_k:
    case dtype::q6_k:
    case dtype::iq4_xs: return size_t(n / k_qk_k) * sizeof(block_q8_k);
    }
    return 0; // unreachable: select() rejected t
}

void quantize_activation(dtype t, const float * x, void * dst, int64_t n) { select(t, n).quantize_act(x, dst, n); }

float dot_row(dtype t, const void * w_row, const void * act, int64_t n) { return select(t, n).dot(w_row, act, n); }

void matvec(const raw_view & w, const float * x, float * y, std::vector<std::byte> & scratch, int n_threads) {
    matmul_rows(w, x, 1, y, scratch, n_threads);
}

void matmul_rows(const raw_view & w, const float * x, int64_t m, float * y, std::vector<std::byte> & scratch,
                 int n_threads, int64_t ldy) {
    const row_product p{w, y, ldy};
    matmul_rows_many(std::span(&p, 1), x, m, scratch, n_threads);
}

namespace {

// Weight types whose kernels multiply the same activation format (quant.hpp's vec_dot_type).
int activation_format(dtype t) {
    switch (t) {
    case dtype::q8_0: case dtype::q4_0: case dtype::q4_0_repacked: case dtype::q5_0: case dtype::q5_0_repacked:
    case dtype::iq4_nl: case dtype::iq4_nl_repacked:
        return -1; // Q8_0
    case dtype::q2_k: case dtype::q3_k: case dtype::q4_k: case dtype::q5_k: case dtype::q6_k: case dtype::iq4_xs:
        return -2; // Q8_K
    default: return int(t);
    }
}

// Weight rows a few activation rows take as one run through a row loop (dot_rows) each: the run
// stays in L2 while the loop meets it once per activation row, so it is read from memory once,
// and the loop's per-call set-up (the activation's tables) is spread over a few hundred rows.
constexpr int64_t k_row_run_bytes = 256 << 10;

// Rows [r0, r1) of one product against m converted activation rows act_bytes apart.
void product_rows(const row_product & p, const std::byte * act, size_t act_bytes, int64_t m, int64_t r0, int64_t r1) {
    const int64_t n = p.w.row_size();
    const detail::kernels k = select(p.w.type, n);
    const size_t stride = size_t(p.w.row_stride());
    // The kernel loops over the rows itself: one activation row, or a few where it batches them
    // (dot_rows_batch) or cannot (no dot_batch).
    if (k.dot_rows && (m == 1 || k.dot_rows_batch || !k.dot_batch)) {
        const int64_t run = std::max<int64_t>(1, m == 1 ? r1 - r0 : k_row_run_bytes / int64_t(stride));
        for (int64_t c0 = r0; c0 < r1; c0 += run) {
            const int64_t rows = std::min(run, r1 - c0);
            if (k.dot_rows_batch && m > 1) // up to k_batch activation rows per pass over the run
                for (int64_t i = 0; i < m; i += detail::k_batch)
                    k.dot_rows_batch(p.w.row(c0), stride, rows, act + size_t(i) * act_bytes, act_bytes,
                                     std::min<int64_t>(detail::k_batch, m - i), n, p.y + i * p.ldy + c0, p.ldy);
            else
                for (int64_t i = 0; i < m; ++i)
                    k.dot_rows(p.w.row(c0), stride, rows, act + size_t(i) * act_bytes, n, p.y + i * p.ldy + c0);
        }
        return;
    }
    for (int64_t r = r0; r < r1; ++r) {
        // The row stays in L1 while it meets all m activations: read from memory once.
        const std::byte * wr = p.w.row(r);
        int64_t i = 0;
        if (k.dot_batch) {
            for (; i + detail::k_batch <= m; i += detail::k_batch) {
                float out[detail::k_batch];
                k.dot_batch(wr, act + size_t(i) * act_bytes, act_bytes, n, out);
                for (int j = 0; j < detail::k_batch; ++j) p.y[(i + j) * p.ldy + r] = out[j];
            }
        }
        for (; i < m; ++i) p.y[i * p.ldy + r] = k.dot(wr, act + size_t(i) * act_bytes, n);
    }
}

} // namespace

void matmul_rows_many(std::span<const row_product> products, const float * x, int64_t m,
                      std::vector<std::byte> & scratch, int n_threads) {
    if (m < 0) throw_error(status::invalid_argument, "quant: matmul_rows: m = {} is negative", m);
    if (products.empty() || m == 0) return;
    if (products.size() > k_max_row_products)
        throw_error(status::invalid_argument, "quant: matmul_rows_many: {} products, at most {}", products.size(),
                    k_max_row_products);
    // What each product multiplies: its input converted for its kernel, at act + at[j], one
    // conversion per (input, activation format, row length) however many products share it.
    struct conversion {
        const float * x;
        int format; // activation_format
        int64_t n;
        detail::kernels k; // the first product's: its conversion serves every type of the format
        size_t act_bytes, at;
    };
    std::array<row_product, k_max_row_products> checked;
    std::array<size_t, k_max_row_products> uses; // product j's conversion
    std::array<conversion, k_max_row_products> conv;
    size_t n_conv = 0, bytes = 0;
    for (size_t j = 0; j < products.size(); ++j) {
        auto p = products[j];
        const int64_t n = p.w.row_size();
        const detail::kernels k = select(p.w.type, n); // validates the type and the row length
        if (!p.x) p.x = x;
        if (!p.x) throw_error(status::invalid_argument, "quant: matmul_rows_many: product {} has no input", j);
        if (p.ldy == 0) p.ldy = p.w.n_rows();
        if (p.ldy < p.w.n_rows())
            throw_error(status::invalid_argument, "quant: matmul_rows: output stride {} < {} rows", p.ldy, p.w.n_rows());
        checked[j] = p;
        size_t c = 0;
        const int format = activation_format(p.w.type);
        while (c < n_conv && !(conv[c].x == p.x && conv[c].n == n && conv[c].format == format)) ++c;
        if (c == n_conv) {
            conv[n_conv++] = {p.x, format, n, k, activation_bytes(p.w.type, n), bytes};
            bytes += conv[c].act_bytes * size_t(m);
        }
        uses[j] = c;
    }
    if (scratch.size() < bytes) scratch.resize(bytes);
    std::byte * act = scratch.data();
    const int nt = n_threads > 0 ? n_threads : omp_get_max_threads();
    // Single activation rows are converted on this thread: every extra barrier costs a time slice
    // when another process holds a core. A batch is worth splitting.
#pragma omp parallel for num_threads(nt) schedule(static) if (m > 1)
    for (int64_t i = 0; i < m; ++i)
        for (size_t c = 0; c < n_conv; ++c)
            conv[c].k.quantize_act(conv[c].x + i * conv[c].n, act + conv[c].at + size_t(i) * conv[c].act_bytes, conv[c].n);
    // One parallel region for every product, split by weight bytes over the threads (decode
    // reads each byte once), so a thread's share crosses products and types.
    int64_t total = 0, elements = 0;
    for (size_t j = 0; j < products.size(); ++j) {
        total += checked[j].w.n_bytes();
        elements += checked[j].w.n_rows() * checked[j].w.row_size();
    }
    // Below ~64K multiply-adds a fork/join costs more than the work.
#pragma omp parallel num_threads(nt) if (elements * m >= (int64_t(1) << 16))
    {
        const int64_t parts = omp_get_num_threads(), part = omp_get_thread_num();
        const int64_t lo = total * part / parts, hi = total * (part + 1) / parts; // of the concatenated bytes
        int64_t base = 0;
        for (size_t j = 0; j < products.size(); ++j) {
            const row_product & p = checked[j];
            const int64_t rb = p.w.row_stride(); // a row goes to the thread whose share holds its first byte
            const auto row_at = [&](int64_t b) { return std::clamp((b - base + rb - 1) / rb, int64_t(0), p.w.n_rows()); };
            const int64_t r0 = row_at(lo), r1 = row_at(hi);
            const conversion & c = conv[uses[j]];
            if (r0 < r1) product_rows(p, act + c.at, c.act_bytes, m, r0, r1);
            base += p.w.n_bytes();
        }
    }
}

void quantize_row_weights(dtype t, const float * x, void * dst, int64_t n) {
    const detail::kernels k = select(t, n);
    switch (t) {
    case dtype::f32:
    case dtype::f16:
    case dtype::bf16: k.quantize_act(x, dst, n); return; // plain rounding: same as the activation
    case dtype::q8_0: quantize_q8_0_weights(x, static_cast<block_q8_0 *>(dst), n / k_qk); return;
    case dtype::q4_0: quantize_q4_0_weights(x, static_cast<block_q4_0 *>(dst), n / k_qk); return;
    case dtype::q4_1:
    case dtype::q5_0:
    case dtype::q5_1:
    case dtype::iq4_nl:
    case dtype::iq4_xs:
    case dtype::q2_k:
    case dtype::q3_k:
    case dtype::q4_k:
    case dtype::q5_k:
    case dtype::q6_k:
    case dtype::q4_0_repacked:
    case dtype::q5_0_repacked:
    case dtype::iq4_nl_repacked:
    case dtype::q4_1_repacked:
    case dtype::q5_1_repacked: break;
    }
    throw_error(status::invalid_argument, "quant: no weight quantizer for {}", dtype_name(t));
}

dtype repacked_type(dtype t) {
    switch (t) {
    case dtype::q4_0: return dtype::q4_0_repacked;
    case dtype::q5_0: return dtype::q5_0_repacked;
    case dtype::iq4_nl: return dtype::iq4_nl_repacked;
    case dtype::q4_1: return dtype::q4_1_repacked;
    case dtype::q5_1: return dtype::q5_1_repacked;
    default: return t;
    }
}

bool repacking_speeds_decode(dtype t) {
    // Where the SIMD set that would decode t has a loop for the repacked layout: the AVX2 loops
    // gain from it, and so do the AVX-512 ones, which take a quad of blocks in one load there
    // (Zen 4, 1.5B tg128, alternating rounds, as stored -> repacked: Q4_0 26-28 -> 32-33 t/s, Q5_0
    // median 28.9 -> 31.5). Without an AVX-512 repacked loop, on a Zen 5 the stored AVX-512 loop
    // beat the AVX2 repacked one (Q5_0 46-48 against 44 t/s). The scalar code reads both layouts
    // alike, the stored one without rebuilding blocks. Not on Intel's AVX-512 cores: on a
    // Sapphire Rapids VM the stored Q4_0 loop decoded as fast or faster (1.5B tg128 22.0-22.3
    // against 19.7-21.3 t/s repacked) and repacking cost 1-1.5 s of load (0.13 s in place).
    const dtype to = repacked_type(t);
    if (to == t || !use_avx2()) return false;
    if (active_avx512_kernels(t)) return !detail::intel_cpu() && active_avx512_kernels(to) != nullptr;
    return detail::avx2_kernels(to) != nullptr;
}

namespace {
// Block b's qh word into a q5_0_repacked or q5_1_repacked row's fifth bits (zeroed beforehand): the inverse of
// detail::repacked_fifth_bits_word.
void put_fifth_bits(std::byte * fifth, int64_t nb, int64_t b, uint32_t qh) {
    const detail::fifth_bits_place at = detail::fifth_bits_of(nb, b);
    std::byte * h = fifth + at.bytes;
    if (at.bit < 0)
        std::memcpy(h, &qh, sizeof qh);
    else
        detail::put_fifth_bits_word(reinterpret_cast<uint8_t *>(h), at.bit, qh);
}
} // namespace

void repack_rows(dtype t, const void * src, void * dst, int64_t rows, int64_t n) {
    select(t, n);
    const dtype to = repacked_type(t);
    if (to == t) throw_error(status::invalid_argument, "quant: {} has no repacked layout", dtype_name(t));
    const int64_t nb = n / k_qk;
    const size_t stride = size_t(row_bytes(t, n));
    const size_t block = size_t(traits(t).block_bytes);
    for (int64_t r = 0; r < rows; ++r) {
        const auto * in = static_cast<const std::byte *>(src) + size_t(r) * stride;
        std::byte * out = static_cast<std::byte *>(dst) + size_t(r) * stride;
        std::byte * fifth = out + detail::repacked_fifth_bits_offset(nb);
        std::byte * nibbles = out + detail::repacked_nibbles_offset(to, nb);
        std::fill(fifth, nibbles, std::byte{0});
        std::byte * mins = out + detail::repacked_mins_offset(to, nb);
        for (int64_t ib = 0; ib < nb; ++ib) {
            // Every one of these blocks starts with d and ends with the 16 nibble bytes; Q4_1's
            // and Q5_1's m follows d.
            static_assert(offsetof(block_q4_1, m) == offsetof(block_q5_1, m));
            const std::byte * b = in + size_t(ib) * block;
            std::memcpy(out + ib * int64_t(sizeof(uint16_t)), b, sizeof(uint16_t));
            std::memcpy(nibbles + ib * 16, b + block - 16, 16);
            if (detail::repacked_has_mins(to))
                std::memcpy(mins + ib * int64_t(sizeof(uint16_t)), b + offsetof(block_q4_1, m), sizeof(uint16_t));
            if (detail::repacked_has_fifth_bits(to)) {
                uint32_t qh;
                std::memcpy(&qh, b + (t == dtype::q5_0 ? offsetof(block_q5_0, qh) : offsetof(block_q5_1, qh)), sizeof qh);
                put_fifth_bits(fifth, nb, ib, qh);
            }
        }
    }
}

namespace detail {
std::optional<cpu_isa> parse_cpu_isa(std::string_view text) {
    const std::string lower = to_lower(text);
    if (lower == "baseline") return cpu_isa::baseline;
    if (lower == "avx2") return cpu_isa::avx2;
    if (lower == "avx2_vnni") return cpu_isa::avx2_vnni;
    if (lower == "avx512") return cpu_isa::avx512;
    return std::nullopt;
}

cpu_isa max_cpu_isa() {
    static const cpu_isa cap = [] {
        const char * env = std::getenv("FRUGAL_MAX_CPU_ISA");
        if (!env || !*env) return cpu_isa::avx512;
        if (const std::optional<cpu_isa> isa = parse_cpu_isa(env)) return *isa;
        FRUGAL_LOG_WARN("FRUGAL_MAX_CPU_ISA={} is not baseline, avx2, avx2_vnni or avx512: ignored", env);
        return cpu_isa::avx512;
    }();
    return cap;
}

const char * kernel_isa_name() {
    if (cpu_has_avx512_vnni()) return "avx512_vnni";
    if (cpu_has_avx512f()) return "avx512f";
    if (cpu_has_avx_vnni()) return "avx2_vnni";
    return cpu_has_avx2() ? "avx2" : "baseline";
}

void force_scalar(bool on) { g_force_scalar.store(on, std::memory_order_relaxed); }
bool avx2_active() { return use_avx2(); }
bool avx512_vnni_supported() { return cpu_has_avx512_vnni(); }
bool avx_vnni_supported() { return cpu_has_avx_vnni(); }
bool avx512f_supported() { return cpu_has_avx512f(); }
bool avx512_bf16_supported() { return cpu_has_avx512_bf16(); }
bool intel_cpu() {
    static const bool intel = [] {
#if defined(__x86_64__)
        unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
        return __get_cpuid(0, &eax, &ebx, &ecx, &edx) && ebx == 0x756E6547 && edx == 0x49656E69 &&
               ecx == 0x6C65746E; // "GenuineIntel"
#else
        return false;
#endif
    }();
    return intel;
}
bool avx512_in_halves() {
    static const bool halves = [] {
#if defined(__x86_64__)
        unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
        if (!cpu_has_avx512f() || !__get_cpuid(0, &eax, &ebx, &ecx, &edx)) return false;
        const bool amd = ebx == 0x68747541 && edx == 0x69746E65 && ecx == 0x444D4163; // "AuthenticAMD"
        if (!amd || !__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return false;
        const unsigned base = (eax >> 8) & 0xF, family = base == 0xF ? base + ((eax >> 20) & 0xFF) : base;
        return family == 0x19; // Zen 3 (no AVX-512) and Zen 4; Zen 5 is 1Ah
#else
        return false;
#endif
    }();
    return halves;
}
bool decode_row_loop(dtype t) { return select(t, 0).dot_rows != nullptr; }
} // namespace detail

} // namespace frugal::ops
