// quant_scalar.cpp - portable kernels for every weight type: the fallback on CPUs without AVX2,
// and the only dequantizers for Q4_1, Q5_1 and the K-quants.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "ops/quant_kernels.hpp"

namespace frugal::ops::detail {
namespace {

// --- F32 / F16 / BF16: the activation is stored in the weight's own type -----------------------
struct f32_fmt {
    using storage = float;
    static float load(float v) { return v; }
    static float store(float v) { return v; }
};
struct f16_fmt {
    using storage = uint16_t;
    static float load(uint16_t h) { return fp16_to_fp32(h); }
    static uint16_t store(float v) { return fp32_to_fp16(v); }
};
struct bf16_fmt {
    using storage = uint16_t;
    static float load(uint16_t h) { return bf16_to_fp32(h); }
    static uint16_t store(float v) { return fp32_to_bf16(v); }
};

template <class F>
void dequantize_plain(const void * src, float * dst, int64_t n) {
    const auto * s = static_cast<const typename F::storage *>(src);
    for (int64_t i = 0; i < n; ++i) dst[i] = F::load(s[i]);
}

template <class F>
void quantize_plain(const float * x, void * dst, int64_t n) {
    auto * d = static_cast<typename F::storage *>(dst);
    for (int64_t i = 0; i < n; ++i) d[i] = F::store(x[i]);
}

template <class F>
float dot_plain(const void * w, const void * act, int64_t n) {
    const auto * ws = static_cast<const typename F::storage *>(w);
    const auto * as = static_cast<const typename F::storage *>(act);
    // Eight independent partial sums (vectorizable without reassociation, and the same shape as
    // the SIMD path's lanes, so both paths round alike).
    float acc[8] = {};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; ++l) acc[l] += F::load(ws[i + l]) * F::load(as[i + l]);
    float sum = 0.f;
    for (float a : acc) sum += a;
    for (; i < n; ++i) sum += F::load(ws[i]) * F::load(as[i]);
    return sum;
}

// --- 32-element blocks: Q8_0 / Q4_0 / Q5_0 / IQ4_NL with Q8_0 activations, Q4_1 / Q5_1 with Q8_1
// Each format unpacks a block into its 32 integer quants in element order.

// Low nibbles of qs are elements 0..15, high nibbles 16..31.
void unpack_nibbles(const uint8_t * qs, int8_t * q) {
    for (int j = 0; j < k_qk / 2; ++j) {
        q[j] = int8_t(qs[j] & 0xF);
        q[j + k_qk / 2] = int8_t(qs[j] >> 4);
    }
}

// Q5_0/Q5_1: the nibbles, with bit e of qh (a little-endian u32) as bit 4 of element e.
void unpack_5bit(const uint8_t * qh, const uint8_t * qs, int8_t * q) {
    uint32_t h;
    std::memcpy(&h, qh, sizeof h);
    unpack_nibbles(qs, q);
    for (int e = 0; e < k_qk; ++e) q[e] = int8_t(q[e] | ((h >> e) & 1) << 4);
}

struct q8_0_fmt {
    using block = block_q8_0;
    using act = block_q8_0;
    static void unpack(const block & b, int8_t * q) { std::memcpy(q, b.qs, k_qk); }
};
struct q4_0_fmt {
    using block = block_q4_0;
    using act = block_q8_0;
    static void unpack(const block & b, int8_t * q) {
        unpack_nibbles(b.qs, q);
        for (int j = 0; j < k_qk; ++j) q[j] = int8_t(q[j] - 8);
    }
};
struct q5_0_fmt {
    using block = block_q5_0;
    using act = block_q8_0;
    static void unpack(const block & b, int8_t * q) {
        unpack_5bit(b.qh, b.qs, q);
        for (int j = 0; j < k_qk; ++j) q[j] = int8_t(q[j] - 16);
    }
};
struct q4_1_fmt {
    using block = block_q4_1;
    using act = block_q8_1;
    static void unpack(const block & b, int8_t * q) { unpack_nibbles(b.qs, q); }
};
struct q5_1_fmt {
    using block = block_q5_1;
    using act = block_q8_1;
    static void unpack(const block & b, int8_t * q) { unpack_5bit(b.qh, b.qs, q); }
};
struct iq4_nl_fmt {
    using block = block_iq4_nl;
    using act = block_q8_0;
    static void unpack(const block & b, int8_t * q) {
        unpack_nibbles(b.qs, q);
        for (int j = 0; j < k_qk; ++j) q[j] = k_iq4_nl_values[q[j]];
    }
};

// Formats with a per-block offset m (Q4_1, Q5_1) pair with Q8_1, whose s carries the activation
// sum m meets.
template <class F>
constexpr bool has_min = std::is_same_v<typename F::act, block_q8_1>;

template <class F>
void dequantize_32(const void * src, float * dst, int64_t n) {
    const auto * b = static_cast<const typename F::block *>(src);
    for (int64_t ib = 0; ib < n / k_qk; ++ib) {
        int8_t q[k_qk];
        F::unpack(b[ib], q);
        const float d = fp16_to_fp32(b[ib].d);
        float * y = dst + ib * k_qk;
        if constexpr (has_min<F>) {
            const float m = fp16_to_fp32(b[ib].m);
            for (int j = 0; j < k_qk; ++j) y[j] = d * float(q[j]) + m;
        } else {
            for (int j = 0; j < k_qk; ++j) y[j] = d * float(q[j]);
        }
    }
}

// nb blocks of format F (weight_block(ib): block ib, in place or rebuilt) against their
// activation blocks: one order for both layouts, so that they give the same bits.
template <class F, class WeightBlock>
float dot_blocks(WeightBlock weight_block, const void * act, int64_t nb) {
    const auto * ab = static_cast<const typename F::act *>(act);
    float sum = 0.f;
    for (int64_t ib = 0; ib < nb; ++ib) {
        const typename F::block b = weight_block(ib);
        int8_t q[k_qk];
        F::unpack(b, q);
        int s = 0;
        for (int j = 0; j < k_qk; ++j) s += q[j] * ab[ib].qs[j];
        sum += fp16_to_fp32(b.d) * fp16_to_fp32(ab[ib].d) * float(s);
        if constexpr (has_min<F>) sum += fp16_to_fp32(b.m) * fp16_to_fp32(ab[ib].s);
    }
    return sum;
}

template <class F>
float dot_32(const void * w, const void * act, int64_t n) {
    const auto * wb = static_cast<const typename F::block *>(w);
    return dot_blocks<F>([wb](int64_t ib) { return wb[ib]; }, act, n / k_qk);
}

// Repacked rows (R: q4_0_repacked, q5_0_repacked, iq4_nl_repacked, q4_1_repacked, q5_1_repacked):
// each block rebuilt as the original type's block and taken through its arithmetic, in the same
// order, so both layouts give the same bits on this path.
template <dtype R, class F>
struct repacked_as {
    using original = F;
    static typename F::block block(const void * row, int64_t nb, int64_t ib) {
        typename F::block b;
        std::memcpy(&b.d, repacked_scales(row) + ib, sizeof b.d);
        if constexpr (requires { b.m; }) std::memcpy(&b.m, repacked_mins(R, row, nb) + ib, sizeof b.m);
        if constexpr (requires { b.qh; }) {
            const uint32_t qh = repacked_fifth_bits_word(row, nb, ib);
            std::memcpy(b.qh, &qh, sizeof b.qh);
        }
        std::memcpy(b.qs, repacked_nibbles(R, row, nb) + ib * int64_t(sizeof b.qs), sizeof b.qs);
        return b;
    }
};
template <dtype R>
struct repacked_fmt;
template <>
struct repacked_fmt<dtype::q4_0_repacked> : repacked_as<dtype::q4_0_repacked, q4_0_fmt> {};
template <>
struct repacked_fmt<dtype::q5_0_repacked> : repacked_as<dtype::q5_0_repacked, q5_0_fmt> {};
template <>
struct repacked_fmt<dtype::iq4_nl_repacked> : repacked_as<dtype::iq4_nl_repacked, iq4_nl_fmt> {};
template <>
struct repacked_fmt<dtype::q4_1_repacked> : repacked_as<dtype::q4_1_repacked, q4_1_fmt> {};
template <>
struct repacked_fmt<dtype::q5_1_repacked> : repacked_as<dtype::q5_1_repacked, q5_1_fmt> {};

template <dtype R>
void dequantize_repacked(const void * src, float * dst, int64_t n) {
    for (int64_t ib = 0; ib < n / k_qk; ++ib) {
        const auto b = repacked_fmt<R>::block(src, n / k_qk, ib);
        dequantize_32<typename repacked_fmt<R>::original>(&b, dst + ib * k_qk, k_qk);
    }
}

template <dtype R>
float dot_repacked(const void * w, const void * act, int64_t n) {
    const int64_t nb = n / k_qk;
    return dot_blocks<typename repacked_fmt<R>::original>([w, nb](int64_t ib) { return repacked_fmt<R>::block(w, nb, ib); },
                                                          act, nb);
}

// Q8_0 or Q8_1 (B) activations.
template <class B>
void quantize_q8_act(const float * x, void * dst, int64_t n) {
    auto * y = static_cast<B *>(dst);
    for (int64_t ib = 0; ib < n / k_qk; ++ib) {
        const float * xb = x + ib * k_qk;
        float amax = 0.f;
        for (int j = 0; j < k_qk; ++j) amax = std::max(amax, std::fabs(xb[j]));
        // ggml's x86 quantize_row_q8_0/_1: multiply by 127/amax (not divide by d), ties to even.
        const float d = amax / 127.f;
        y[ib].d = fp32_to_fp16(d);
        const float id = amax != 0.f ? 127.f / amax : 0.f;
        for (int j = 0; j < k_qk; ++j) y[ib].qs[j] = int8_t(nearest_int(xb[j] * id));
        if constexpr (std::is_same_v<B, block_q8_1>) fill_q8_1_sum(y[ib], d);
    }
}

// --- K-quants with Q8_K activations ---------------------------------------------------------------
void quantize_q8_k_act(const float * x, void * dst, int64_t n) {
    auto * y = static_cast<block_q8_k *>(dst);
    for (int64_t ib = 0; ib < n / k_qk_k; ++ib) {
        const float * xb = x + ib * k_qk_k;
        // The signed value of largest magnitude (first one on ties) sets the scale, as in ggml.
        float amax = 0.f, max = 0.f;
        for (int j = 0; j < k_qk_k; ++j) {
            if (std::fabs(xb[j]) > amax) {
                amax = std::fabs(xb[j]);
                max = xb[j];
            }
        }
        block_q8_k & b = y[ib];
        if (amax == 0.f) {
            std::memset(&b, 0, sizeof b);
            continue;
        }
        const float iscale = -127.f / max;
        for (int j = 0; j < k_qk_k; ++j) b.qs[j] = int8_t(std::min(127, nearest_int(iscale * xb[j])));
        fill_bsums(b);
        b.d = 1.f / iscale;
    }
}

// The 256 quants of a Q4_K (0..15) or Q5_K (0..31) super-block in element order: chunk c of 64
// takes low nibbles for its first 32 elements and high nibbles for the next 32; Q5_K adds qh bit
// 2c (first half) or 2c+1 (second half) of byte l as bit 4.
template <bool Q5>
void unpack_q45(const q45_block<Q5> & b, uint8_t * q) {
    for (int c = 0; c < 4; ++c) {
        const uint8_t * qs = b.qs + 32 * c;
        for (int l = 0; l < 32; ++l) {
            uint8_t lo = qs[l] & 0xF, hi = qs[l] >> 4;
            if constexpr (Q5) {
                lo = uint8_t(lo | ((b.qh[l] >> (2 * c)) & 1) << 4);
                hi = uint8_t(hi | ((b.qh[l] >> (2 * c + 1)) & 1) << 4);
            }
            q[64 * c + l] = lo;
            q[64 * c + 32 + l] = hi;
        }
    }
}

template <bool Q5>
void dequantize_q45(const void * src, float * dst, int64_t n) {
    const auto * blocks = static_cast<const q45_block<Q5> *>(src);
    for (int64_t i = 0; i < n / k_qk_k; ++i) {
        const auto & b = blocks[i];
        const k_scales s = unpack_k_scales(b.scales);
        const float d = fp16_to_fp32(b.d), dmin = fp16_to_fp32(b.dmin);
        uint8_t q[k_qk_k];
        unpack_q45<Q5>(b, q);
        for (int j = 0; j < 8; ++j) {
            const float d1 = d * float(s.sc[j]), m1 = dmin * float(s.mn[j]);
            for (int l = 0; l < 32; ++l) dst[i * k_qk_k + 32 * j + l] = d1 * float(q[32 * j + l]) - m1;
        }
    }
}

template <bool Q5>
float dot_q45(const void * w, const void * act, int64_t n) {
    const auto * wb = static_cast<const q45_block<Q5> *>(w);
    const auto * ab = static_cast<const block_q8_k *>(act);
    float sum_q = 0.f, sum_m = 0.f;
    for (int64_t i = 0; i < n / k_qk_k; ++i) {
        const k_scales s = unpack_k_scales(wb[i].scales);
        uint8_t q[k_qk_k];
        unpack_q45<Q5>(wb[i], q);
        // sum_j sc_j * <q, x>_j and, through the activation's bsums, sum_j mn_j * sum(x)_j.
        int sumi = 0, summ = 0;
        for (int j = 0; j < 8; ++j) {
            int sj = 0;
            for (int l = 0; l < 32; ++l) sj += q[32 * j + l] * ab[i].qs[32 * j + l];
            sumi += s.sc[j] * sj;
            summ += s.mn[j] * (ab[i].bsums[2 * j] + ab[i].bsums[2 * j + 1]);
        }
        sum_q += ab[i].d * fp16_to_fp32(wb[i].d) * float(sumi);
        sum_m += ab[i].d * fp16_to_fp32(wb[i].dmin) * float(summ);
    }
    return sum_q - sum_m;
}

// The 256 quants of a Q6_K super-block (-32..31) in element order: each half of 128 takes ql
// bytes 0..63 (low nibbles, then high nibbles) and two bits per element from qh bytes 0..31.
void unpack_q6(const block_q6_k & b, int8_t * q) {
    for (int h = 0; h < 2; ++h) {
        const uint8_t * ql = b.ql + 64 * h;
        const uint8_t * qh = b.qh + 32 * h;
        int8_t * out = q + 128 * h;
        for (int l = 0; l < 32; ++l) {
            out[l] = int8_t(((ql[l] & 0xF) | ((qh[l] & 3) << 4)) - 32);
            out[l + 32] = int8_t(((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32);
            out[l + 64] = int8_t(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
            out[l + 96] = int8_t(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
        }
    }
}

void dequantize_q6(const void * src, float * dst, int64_t n) {
    const auto * blocks = static_cast<const block_q6_k *>(src);
    for (int64_t i = 0; i < n / k_qk_k; ++i) {
        int8_t q[k_qk_k];
        unpack_q6(blocks[i], q);
        const float d = fp16_to_fp32(blocks[i].d);
        for (int g = 0; g < 16; ++g) {
            const float ds = d * float(blocks[i].scales[g]);
            for (int l = 0; l < 16; ++l) dst[i * k_qk_k + 16 * g + l] = ds * float(q[16 * g + l]);
        }
    }
}

float dot_q6(const void * w, const void * act, int64_t n) {
    const auto * wb = static_cast<const block_q6_k *>(w);
    const auto * ab = static_cast<const block_q8_k *>(act);
    float sum = 0.f;
    for (int64_t i = 0; i < n / k_qk_k; ++i) {
        int8_t q[k_qk_k];
        unpack_q6(wb[i], q);
        int sumi = 0;
        for (int g = 0; g < 16; ++g) {
            int sg = 0;
            for (int l = 0; l < 16; ++l) sg += q[16 * g + l] * ab[i].qs[16 * g + l];
            sumi += wb[i].scales[g] * sg;
        }
        sum += ab[i].d * fp16_to_fp32(wb[i].d) * float(sumi);
    }
    return sum;
}

// --- Q2_K and Q3_K: 16 sub-blocks of 16, one scale each (Q2_K: and a min) --------------------
// Their 2-bit quants in element order: byte l of 32-byte group g holds element 128g + 32s + l in
// bits 2s, 2s+1.
void unpack_2bit(const uint8_t * qs, int8_t * q) {
    for (int g = 0; g < 2; ++g)
        for (int s = 0; s < 4; ++s)
            for (int l = 0; l < 32; ++l) q[128 * g + 32 * s + l] = int8_t((qs[32 * g + l] >> (2 * s)) & 3);
}

// Q3_K's quants (-4..3): the 2-bit ones, less 4 where element 32s + l's bit s of hmask[l] is clear.
void unpack_q3(const block_q3_k & b, int8_t * q) {
    unpack_2bit(b.qs, q);
    for (int s = 0; s < 8; ++s)
        for (int l = 0; l < 32; ++l) q[32 * s + l] = int8_t(q[32 * s + l] - ((b.hmask[l] >> s) & 1 ? 0 : 4));
}

void dequantize_q2(const void * src, float * dst, int64_t n) {
    const auto * blocks = static_cast<const block_q2_k *>(src);
    for (int64_t i = 0; i < n / k_qk_k; ++i) {
        const block_q2_k & b = blocks[i];
        int8_t q[k_qk_k];
        unpack_2bit(b.qs, q);
        const float d = fp16_to_fp32(b.d), dmin = fp16_to_fp32(b.dmin);
        for (int j = 0; j < 16; ++j) {
            const float dl = d * float(b.scales[j] & 0xF), ml = dmin * float(b.scales[j] >> 4);
            for (int l = 0; l < 16; ++l) dst[i * k_qk_k + 16 * j + l] = dl * float(q[16 * j + l]) - ml;
        }
    }
}

float dot_q2(const void * w, const void * act, int64_t n) {
    const auto * wb = static_cast<const block_q2_k *>(w);
    const auto * ab = static_cast<const block_q8_k *>(act);
    float sum_q = 0.f, sum_m = 0.f;
    for (int64_t i = 0; i < n / k_qk_k; ++i) {
        int8_t q[k_qk_k];
        unpack_2bit(wb[i].qs, q);
        // sum_j sc_j * <q, x>_j and, through the activation's bsums, sum_j m_j * sum(x)_j.
        int sumi = 0, summ = 0;
        for (int j = 0; j < 16; ++j) {
            int sj = 0;
            for (int l = 0; l < 16; ++l) sj += q[16 * j + l] * ab[i].qs[16 * j + l];
            sumi += (wb[i].scales[j] & 0xF) * sj;
            summ += (wb[i].scales[j] >> 4) * ab[i].bsums[j];
        }
        sum_q += ab[i].d * fp16_to_fp32(wb[i].d) * float(sumi);
        sum_m += ab[i].d * fp16_to_fp32(wb[i].dmin) * float(summ);
    }
    return sum_q - sum_m;
}

void dequantize_q3(const void * src, float * dst, int64_t n) {
    const auto * blocks = static_cast<const block_q3_k *>(src);
    for (int64_t i = 0; i < n / k_qk_k; ++i) {
        int8_t q[k_qk_k];
        unpack_q3(blocks[i], q);
        const k3_scales s = unpack_k3_scales(blocks[i].scales);
        const float d = fp16_to_fp32(blocks[i].d);
        for (int j = 0; j < 16; ++j) {
            const float dl = d * float(s.sc(j) - 32);
            for (int l = 0; l < 16; ++l) dst[i * k_qk_k + 16 * j + l] = dl * float(q[16 * j + l]);
        }
    }
}

float dot_q3(const void * w, const void * act, int64_t n) {
    const auto * wb = static_cast<const block_q3_k *>(w);
    const auto * ab = static_cast<const block_q8_k *>(act);
    float sum = 0.f;
    for (int64_t i = 0; i < n / k_qk_k; ++i) {
        int8_t q[k_qk_k];
        unpack_q3(wb[i], q);
        const k3_scales s = unpack_k3_scales(wb[i].scales);
        int sumi = 0;
        for (int j = 0; j < 16; ++j) {
            int sj = 0;
            for (int l = 0; l < 16; ++l) sj += q[16 * j + l] * ab[i].qs[16 * j + l];
            sumi += (s.sc(j) - 32) * sj;
        }
        sum += ab[i].d * fp16_to_fp32(wb[i].d) * float(sumi);
    }
    return sum;
}

// --- IQ4_XS: IQ4_NL's levels under a 6-bit scale per 32 and an fp16 d per 256 ---------------------
void dequantize_iq4_xs(const void * src, float * dst, int64_t n) {
    const auto * blocks = static_cast<const block_iq4_xs *>(src);
    for (int64_t i = 0; i < n / k_qk_k; ++i) {
        const block_iq4_xs & b = blocks[i];
        const uint64_t scales = unpack_iq4_xs_scales(b);
        const float d = fp16_to_fp32(b.d);
        for (int j = 0; j < 8; ++j) {
            const float dl = d * float(int((scales >> (8 * j)) & 0xFF) - 32);
            int8_t q[k_qk];
            unpack_nibbles(b.qs + 16 * j, q);
            for (int l = 0; l < k_qk; ++l) dst[i * k_qk_k + 32 * j + l] = dl * float(k_iq4_nl_values[q[l]]);
        }
    }
}

float dot_iq4_xs(const void * w, const void * act, int64_t n) {
    const auto * wb = static_cast<const block_iq4_xs *>(w);
    const auto * ab = static_cast<const block_q8_k *>(act);
    float sum = 0.f;
    for (int64_t i = 0; i < n / k_qk_k; ++i) {
        const uint64_t scales = unpack_iq4_xs_scales(wb[i]);
        int sumi = 0;
        for (int j = 0; j < 8; ++j) {
            int8_t q[k_qk];
            unpack_nibbles(wb[i].qs + 16 * j, q);
            int sj = 0;
            for (int l = 0; l < k_qk; ++l) sj += k_iq4_nl_values[q[l]] * ab[i].qs[32 * j + l];
            sumi += (int((scales >> (8 * j)) & 0xFF) - 32) * sj;
        }
        sum += ab[i].d * fp16_to_fp32(wb[i].d) * float(sumi);
    }
    return sum;
}

template <class F>
constexpr kernels plain_kernels{dequantize_plain<F>, quantize_plain<F>, dot_plain<F>};
template <class F>
constexpr kernels q32_kernels{dequantize_32<F>, quantize_q8_act<typename F::act>, dot_32<F>};
template <bool Q5>
constexpr kernels q45_kernels{dequantize_q45<Q5>, quantize_q8_k_act, dot_q45<Q5>};
constexpr kernels q6_kernels{dequantize_q6, quantize_q8_k_act, dot_q6};
constexpr kernels q2_kernels{dequantize_q2, quantize_q8_k_act, dot_q2};
constexpr kernels q3_kernels{dequantize_q3, quantize_q8_k_act, dot_q3};
constexpr kernels iq4_xs_kernels{dequantize_iq4_xs, quantize_q8_k_act, dot_iq4_xs};
template <dtype R>
constexpr kernels repacked_kernels{dequantize_repacked<R>, quantize_q8_act<typename repacked_fmt<R>::original::act>,
                                  dot_repacked<R>};

} // namespace

const kernels * scalar_kernels(dtype t) {
    switch (t) {
    case dtype::f32: return &plain_kernels<f32_fmt>;
    case dtype::f16: return &plain_kernels<f16_fmt>;
    case dtype::bf16: return &plain_kernels<bf16_fmt>;
    case dtype::q8_0: return &q32_kernels<q8_0_fmt>;
    case dtype::q4_0: return &q32_kernels<q4_0_fmt>;
    case dtype::q5_0: return &q32_kernels<q5_0_fmt>;
    case dtype::q4_1: return &q32_kernels<q4_1_fmt>;
    case dtype::q5_1: return &q32_kernels<q5_1_fmt>;
    case dtype::iq4_nl: return &q32_kernels<iq4_nl_fmt>;
    case dtype::iq4_xs: return &iq4_xs_kernels;
    case dtype::q2_k: return &q2_kernels;
    case dtype::q3_k: return &q3_kernels;
    case dtype::q4_k: return &q45_kernels<false>;
    case dtype::q5_k: return &q45_kernels<true>;
    case dtype::q6_k: return &q6_kernels;
    case dtype::q4_0_repacked: return &repacked_kernels<dtype::q4_0_repacked>;
    case dtype::q5_0_repacked: return &repacked_kernels<dtype::q5_0_repacked>;
    case dtype::iq4_nl_repacked: return &repacked_kernels<dtype::iq4_nl_repacked>;
    case dtype::q4_1_repacked: return &repacked_kernels<dtype::q4_1_repacked>;
    case dtype::q5_1_repacked: return &repacked_kernels<dtype::q5_1_repacked>;
    }
    return nullptr;
}

} // namespace frugal::ops::detail
