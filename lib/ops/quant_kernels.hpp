// quant_kernels.hpp - private to lib/ops/quant*.cpp: the per-type kernel table each instruction-set
// path fills in, and the bit-level helpers both paths share so they produce identical integers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include <unistd.h>

#include "frugal/dtype.hpp"
#include "ops/quant.hpp"

namespace frugal::ops::detail {

inline constexpr int k_batch = 4; // activation rows per dot_batch call

// The batched row loops' (kernels::dot_rows_batch, every instruction set) per-thread buffer for
// their prepared activation rows: at least `bytes`, 64-byte aligned, grown once (4 × 69 KiB at
// the longest rows would not sit well on a host thread's stack). Valid until the thread's next call.
inline std::byte * batch_buffer(size_t bytes) {
    thread_local std::vector<std::byte> buffer;
    if (buffer.size() < bytes + 64) buffer.resize(bytes + 64);
    return buffer.data() + (64 - reinterpret_cast<uintptr_t>(buffer.data()) % 64) % 64;
}

// Whether an AVX-512 decode row loop prefetches its weights into L2 only (_MM_HINT_T1) rather
// than into L1 as well. Between two reads of an activation line the loop streams one weight row
// through L1 and reads the rest of the activation; when those come to half of L1 or more, the
// weight lines prefetched into L1 (the more recently used) evict activation lines, which each row
// then reads back from L2. Zen 4 (32 KiB L1D), 1536 rows from DRAM, 2 threads, the two hints
// alternating matrix by matrix, T1 / T0 speed:
//   Q8_0, Q4_0 (68 activation bytes per 32 elements): K <= 4096 0.91-1.02, 6144 0.95-1.09,
//                                                      8960 1.38-1.49, 14336 1.44-1.67
//   Q4_K (384 per 256):                                K <= 4096 0.89-0.90, 6144 0.93-1.03,
//                                                      8960 1.03, 14336 1.57
//   Q6_K (292 per 256):                                K 4096 0.94, 8960 1.06-1.14, 14336 1.19
// Whole decode steps, the two alternating token by token: 1.5B Qwen2 Q8_0 +4-5 %, Q4_0 +1-4 %,
// Q4_K_M and deepseek2-lite6 +0-2 %, a Llama-8B's first 4 layers Q8_0 +5-7 %. Batches of
// activation rows (short prompts), alternating prompt by prompt: 2 rows +3-5 %, but 4 rows -4-7 %
// and 3 rows -3 to +1 %, so batches of more than two keep T0: there each weight line serves
// enough rows that having it in L1 counts for more. The AVX2 loops keep T0 everywhere: T1 on rows
// past this rule lost 7-15 % (1.5B and Llama-8B Q8_0 on the same Zen 4). The F32/F16/BF16 loops
// take L2 always (quant_avx2.cpp).
// activation_bytes: what a weight row's pass reads of each of the `activation_rows` rows.
inline bool prefetch_weights_to_l2(int activation_rows, size_t activation_bytes, size_t weight_row_bytes) {
    static const size_t l1d = [] {
        const long bytes = sysconf(_SC_LEVEL1_DCACHE_SIZE);
        return bytes > 0 ? size_t(bytes) : size_t(32) << 10;
    }();
    return activation_rows <= 2 && 2 * (size_t(activation_rows) * activation_bytes + weight_row_bytes) >= l1d;
}

// f(integral_constant<int, m>) for a batch of m = 1 .. k_batch activation rows. Always inlined:
// the callers' row loops (f) carry their instruction set's target, and only inlined into such a
// caller can they be inlined here (called through it, the AVX-512 batched loop ran 3-4 % slower).
template <class F>
__attribute__((always_inline)) inline void with_batch_rows(int64_t m, F f) {
    static_assert(k_batch == 4);
    switch (m) {
    case 1: f(std::integral_constant<int, 1>{}); break;
    case 2: f(std::integral_constant<int, 2>{}); break;
    case 3: f(std::integral_constant<int, 3>{}); break;
    default: f(std::integral_constant<int, 4>{}); break;
    }
}

// In the SIMD table, a nullptr dequantize/quantize_act means "use the scalar one".
struct kernels {
    void (*dequantize)(const void * src, float * dst, int64_t n);
    void (*quantize_act)(const float * x, void * dst, int64_t n);
    float (*dot)(const void * w, const void * act, int64_t n);
    // out[k] = dot(w, act + k * act_stride) for k < k_batch, bit-identical to dot, with the weight
    // row unpacked once; nullptr = call dot k_batch times.
    void (*dot_batch)(const void * w, const std::byte * act, size_t act_stride, int64_t n, float * out) = nullptr;
    // out[r] = dot(w + r * w_stride, act) for r < rows, bit-identical to dot: the decode
    // (single activation row) loop inside the kernel, which converts the activation's scales once
    // per call; nullptr = call dot per row. A set with this and no dot_batch takes a few
    // activation rows through it too, one after another over runs of weight rows.
    void (*dot_rows)(const std::byte * w, size_t w_stride, int64_t rows, const void * act, int64_t n,
                     float * out) = nullptr;
    // out[i * ldo + r] = dot(w + r * w_stride, act + i * act_stride) for r < rows, i < m <=
    // k_batch, bit-identical to dot: dot_rows for a few activation rows at once, each weight
    // block unpacked once for all of them; nullptr = dot_rows once per activation row.
    void (*dot_rows_batch)(const std::byte * w, size_t w_stride, int64_t rows, const std::byte * act,
                           size_t act_stride, int64_t m, int64_t n, float * out, int64_t ldo) = nullptr;
};

// nullptr when t is not supported (AVX-512: when t has no AVX-512 kernel; the AVX2 ones serve).
const kernels * scalar_kernels(dtype t);
const kernels * avx2_kernels(dtype t);
const kernels * avx512_kernels(dtype t);

// A repacked row of nb blocks (dtype.hpp: q4_0_repacked, q5_0_repacked, iq4_nl_repacked,
// q4_1_repacked, q5_1_repacked): the fp16 scales, then (Q5_0, Q5_1) 4 bytes of fifth bits per
// block, then (Q4_1, Q5_1) the fp16 offsets m, then 16 nibble bytes per block. (The offsets ahead
// of the nibbles: the q8 packers read each fp16 as a dword, which at a row's end would read past
// it.)
inline constexpr int64_t k_fifth_bits_group = 8; // blocks whose fifth bits share 32 bytes
inline constexpr bool repacked_has_fifth_bits(dtype t) { return t == dtype::q5_0_repacked || t == dtype::q5_1_repacked; }
inline constexpr bool repacked_has_mins(dtype t) { return t == dtype::q4_1_repacked || t == dtype::q5_1_repacked; }
inline constexpr int64_t repacked_fifth_bits_offset(int64_t nb) { return nb * int64_t(sizeof(uint16_t)); }
inline constexpr int64_t repacked_mins_offset(dtype t, int64_t nb) {
    return repacked_fifth_bits_offset(nb) + (repacked_has_fifth_bits(t) ? nb * int64_t(sizeof(uint32_t)) : 0);
}
inline constexpr int64_t repacked_nibbles_offset(dtype t, int64_t nb) {
    return repacked_mins_offset(t, nb) + (repacked_has_mins(t) ? nb * int64_t(sizeof(uint16_t)) : 0);
}
inline const uint16_t * repacked_scales(const void * row) { return static_cast<const uint16_t *>(row); }
inline const uint8_t * repacked_fifth_bits(const void * row, int64_t nb) {
    return static_cast<const uint8_t *>(row) + repacked_fifth_bits_offset(nb);
}
inline const uint8_t * repacked_nibbles(dtype t, const void * row, int64_t nb) {
    return static_cast<const uint8_t *>(row) + repacked_nibbles_offset(t, nb);
}
inline const uint16_t * repacked_mins(dtype t, const void * row, int64_t nb) {
    return reinterpret_cast<const uint16_t *>(static_cast<const uint8_t *>(row) + repacked_mins_offset(t, nb));
}

// Where block b's fifth bits sit among a q5_0_repacked row's (either form takes 4 bytes a block,
// so a group's 32 bytes, and a tail block's word, start at 4 · its first block): in a full group,
// bits `bit` (elements 0..15) and bit + 1 (16..31) of the 16 bytes at `bytes`; else the qh word
// there.
struct fifth_bits_place {
    int64_t bytes;
    int bit;         // < 0: a Q5_0 qh word
};
inline constexpr fifth_bits_place fifth_bits_of(int64_t nb, int64_t b) {
    const int64_t g = b / k_fifth_bits_group, j = b % k_fifth_bits_group;
    if ((g + 1) * k_fifth_bits_group > nb) return {4 * b, -1};
    return {4 * g * k_fifth_bits_group + 16 * (j % 2), int(j / 2 * 2)};
}

// Bit `bit` of each of 8 bytes (x little-endian) as an 8-bit mask, byte i at bit i. The
// multiplier moves byte i's bit 0 to bit 56 + i and every other product below bit 56.
inline uint32_t byte_bits(uint64_t x, int bit) {
    return uint32_t((((x >> bit) & 0x0101010101010101u) * 0x0102040810204080u) >> 56);
}

// Bits 0..7 of x as 8 bytes of 0 or 1 (byte i: bit i), little-endian: byte_bits' inverse. Each
// byte keeps its own bit after the mask; adding 0x7F carries it to the byte's top bit.
inline uint64_t bits_to_bytes(uint32_t x) {
    const uint64_t t = (uint64_t(x & 0xFF) * 0x0101010101010101u) & 0x8040201008040201u;
    return ((t + 0x7F7F7F7F7F7F7F7Fu) & 0x8080808080808080u) >> 7;
}

// A Q5_0 qh word ORed into the 16 bytes where fifth_bits_of puts a full group's block (bit `bit`
// for elements 0..15, bit + 1 for 16..31): repacked_fifth_bits_word's inverse.
inline void put_fifth_bits_word(uint8_t * bytes16, int bit, uint32_t qh) {
    uint64_t lo, hi; // the bytes of elements 0..7 and 8..15 (16..23 and 24..31 one bit up)
    std::memcpy(&lo, bytes16, sizeof lo);
    std::memcpy(&hi, bytes16 + 8, sizeof hi);
    lo |= bits_to_bytes(qh) << bit | bits_to_bytes(qh >> 16) << (bit + 1);
    hi |= bits_to_bytes(qh >> 8) << bit | bits_to_bytes(qh >> 24) << (bit + 1);
    std::memcpy(bytes16, &lo, sizeof lo);
    std::memcpy(bytes16 + 8, &hi, sizeof hi);
}

// Block b of a q5_0_repacked row as Q5_0's qh word (element e: bit e).
inline uint32_t repacked_fifth_bits_word(const void * row, int64_t nb, int64_t b) {
    const fifth_bits_place at = fifth_bits_of(nb, b);
    const uint8_t * h = repacked_fifth_bits(row, nb) + at.bytes;
    uint32_t word;
    if (at.bit < 0) {
        std::memcpy(&word, h, sizeof word);
        return word;
    }
    uint64_t lo, hi; // elements 0..7, 8..15 (and 16..23, 24..31 one bit up)
    std::memcpy(&lo, h, sizeof lo);
    std::memcpy(&hi, h + 8, sizeof hi);
    return byte_bits(lo, at.bit) | byte_bits(hi, at.bit) << 8 | byte_bits(lo, at.bit + 1) << 16 |
           byte_bits(hi, at.bit + 1) << 24;
}

template <bool Q5>
using q45_block = std::conditional_t<Q5, block_q5_k, block_q4_k>; // Q4_K and Q5_K share their code

// Round to nearest, ties to even, as ggml's nearest_int and the AVX2 cvtps instructions do:
// adding 1.5 * 2^23 leaves the rounded integer in the low mantissa bits. Valid for |v| < 2^22;
// cheaper than std::nearbyint, which is a libm call on baseline x86-64.
inline int nearest_int(float v) {
    const float biased = v + 12582912.f;
    int32_t bits;
    std::memcpy(&bits, &biased, sizeof bits);
    return (bits & 0x007FFFFF) - 0x00400000;
}

// The eight 6-bit (scale, min) pairs of a Q4_K/Q5_K super-block, unpacked four at a time
// (same bits as k_scale_min in dtype.hpp: low 6 bits of bytes 0..7 hold pairs 0..3; pairs 4..7
// take their low nibbles from bytes 8..11 and their top two bits from the tops of bytes 0..7).
struct k_scales {
    uint8_t sc[8];
    uint8_t mn[8];
};
inline k_scales unpack_k_scales(const uint8_t * s) {
    uint32_t a, b, c;
    std::memcpy(&a, s, 4);
    std::memcpy(&b, s + 4, 4);
    std::memcpy(&c, s + 8, 4);
    const uint32_t sc[2] = {a & 0x3F3F3F3Fu, (c & 0x0F0F0F0Fu) | ((a & 0xC0C0C0C0u) >> 2)};
    const uint32_t mn[2] = {b & 0x3F3F3F3Fu, ((c >> 4) & 0x0F0F0F0Fu) | ((b & 0xC0C0C0C0u) >> 2)};
    k_scales r;
    std::memcpy(r.sc, sc, 8);
    std::memcpy(r.mn, mn, 8);
    return r;
}

// The sixteen 6-bit scales of a Q3_K super-block, each still + 32, in sub-block order (ggml's
// shuffle on 32-bit words): the low 4 bits of scale j are nibble j / 8 of byte j % 8 (low nibbles
// first), its top two bits are bits 2·(j / 4), 2·(j / 4) + 1 of byte 8 + j % 4. Kept as the four
// words (scale j: byte j % 4 of words[j / 4]), which SIMD callers move into a register as they
// are: through memory, a 16-byte load of four 4-byte stores waits on store forwarding, which
// had held the Q3_K dots to 12 GB/s on Zen 4.
struct k3_scales {
    uint32_t words[4];
    int sc(int j) const { return int((words[j / 4] >> (8 * (j % 4))) & 0xFF); }
};
inline k3_scales unpack_k3_scales(const uint8_t * s) {
    uint32_t a[3];
    std::memcpy(a, s, sizeof a);
    constexpr uint32_t nibbles = 0x0F0F0F0Fu, pairs = 0x03030303u;
    return {{(a[0] & nibbles) | ((a[2] & pairs) << 4), (a[1] & nibbles) | (((a[2] >> 2) & pairs) << 4),
             ((a[0] >> 4) & nibbles) | (((a[2] >> 4) & pairs) << 4), ((a[1] >> 4) & nibbles) | (((a[2] >> 6) & pairs) << 4)}};
}

// The eight 6-bit sub-block scales ls of an IQ4_XS super-block (each still + 32), scale j in byte
// j of the word: its low 4 bits from nibble j % 2 of scales_l[j / 2], its top 2 from bits 2j,
// 2j + 1 of scales_h. A word, not bytes in memory, for the reason k3_scales gives.
inline uint64_t unpack_iq4_xs_scales(const block_iq4_xs & b) {
    uint64_t word = 0;
    for (int j = 0; j < 8; ++j) {
        const unsigned ls = ((b.scales_l[j / 2] >> (4 * (j % 2))) & 0xF) | (((b.scales_h >> (2 * j)) & 3) << 4);
        word |= uint64_t(ls) << (8 * j);
    }
    return word;
}

// Q8_1's s = d * sum(q) with d = amax/127 before its fp16 rounding, as ggml's x86
// quantize_row_q8_1 (written after the quants, identically by both paths).
inline void fill_q8_1_sum(block_q8_1 & b, float d) {
    int sum = 0;
    for (int8_t q : b.qs) sum += q;
    b.s = fp32_to_fp16(d * float(sum));
}

// Q8_K's sums of each 16 quants (written after the quants, identically by both paths).
inline void fill_bsums(block_q8_k & b) {
    for (int g = 0; g < k_qk_k / 16; ++g) {
        int s = 0;
        for (int l = 0; l < 16; ++l) s += b.qs[16 * g + l];
        b.bsums[g] = int16_t(s);
    }
}

} // namespace frugal::ops::detail
