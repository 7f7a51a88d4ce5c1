// dtype.hpp - element and block types, with the GGUF (ggml_type) numbering and block layouts.
// Header-only, no I/O, no globals. Block structs mirror ggml-common.h byte for byte.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

namespace frugal {

// Values are the ggml_type ids stored in GGUF tensor infos (MODEL-SPEC.md §3.1).
enum class dtype : uint32_t {
    f32 = 0,
    f16 = 1,
    q4_0 = 2,
    q4_1 = 3,
    q5_0 = 6,
    q5_1 = 7,
    q8_0 = 8,
    q2_k = 10,
    q3_k = 11,
    q4_k = 12,
    q5_k = 13,
    q6_k = 14,
    iq4_nl = 20,
    iq4_xs = 23,
    bf16 = 30,
    // Not GGUF types (dtype_from_ggml never returns them): layouts the loader rewrites weights
    // into for faster kernels, with the same bytes per row as the original.
    // Q4_0 with each row's fp16 scales gathered ahead of its blocks' 16 nibble bytes:
    // row = d[nb] | qs[nb][16], nb = n / 32. Element values are Q4_0's.
    q4_0_repacked = 0x10002,
    // Q5_0 the same way, with the fifth bits between scales and nibbles:
    // row = d[nb] | fifth bits (4 · nb bytes) | qs[nb][16]. Each full group of 8 blocks keeps
    // its 256 fifth bits as 32 bytes h: with the blocks taken in pairs (2p, 2p + 1), bit 2p of
    // h[16 · i + e] is that of element e of block 2p + i, and bit 2p + 1 that of element 16 + e
    // (e < 16, i < 2), so one shift and one mask turn h into a nibble pair's fifth bits. The
    // blocks after the last full group keep Q5_0's qh words. Element values are Q5_0's.
    q5_0_repacked = 0x10006,
    // IQ4_NL as Q4_0 repacked: row = d[nb] | qs[nb][16]. Element values are IQ4_NL's.
    iq4_nl_repacked = 0x10014,
    // Q4_1 and Q5_1 as Q4_0 and Q5_0 repacked, their offsets m ahead of the nibbles:
    // row = d[nb] | m[nb] | qs[nb][16], and d[nb] | fifth bits | m[nb] | qs[nb][16].
    q4_1_repacked = 0x10003,
    q5_1_repacked = 0x10007,
};

inline constexpr int64_t k_qk = 32;    // elements per block of Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL
inline constexpr int64_t k_qk_k = 256; // elements per super-block of the K-quants
inline constexpr int k_k_scale_bytes = 12;

// --- half precision ----------------------------------------------------------------------
// IEEE binary16 <-> float, exact (round-to-nearest-even when narrowing). Bit manipulation so it
// is constexpr and independent of F16C; hot loops use the CPU's conversions instead.
constexpr float fp16_to_fp32(uint16_t h) noexcept {
    const uint32_t sign = uint32_t(h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1Fu;
    uint32_t mant = h & 0x3FFu;
    if (exp == 0x1F) return std::bit_cast<float>(sign | 0x7F800000u | (mant << 13)); // inf/nan
    if (exp == 0) {
        if (mant == 0) return std::bit_cast<float>(sign);
        // subnormal: value = mant * 2^-24
        int e = -1;
        do { mant <<= 1; ++e; } while ((mant & 0x400u) == 0);
        mant &= 0x3FFu;
        return std::bit_cast<float>(sign | uint32_t(127 - 15 - e) << 23 | (mant << 13));
    }
    return std::bit_cast<float>(sign | (exp + (127 - 15)) << 23 | (mant << 13));
}

constexpr uint16_t fp32_to_fp16(float f) noexcept {
    const uint32_t x = std::bit_cast<uint32_t>(f);
    const uint32_t sign = (x >> 16) & 0x8000u;
    const uint32_t abs = x & 0x7FFFFFFFu;
    if (abs > 0x7F800000u) return uint16_t(sign | 0x7E00u);         // nan
    if (abs >= 0x477FF000u) return uint16_t(sign | 0x7C00u);        // overflow (>= 65520) -> inf
    if (abs < 0x38800000u) {                                        // subnormal or zero in half
        if (abs < 0x33000000u) return uint16_t(sign);                // < 2^-25 rounds to 0
        // result = round(f * 2^24) half-subnormal units; f = m * 2^(e - 150) so shift = 126 - e
        const uint32_t e = abs >> 23;
        const uint32_t m = (abs & 0x7FFFFFu) | 0x800000u;
        const uint32_t shift = 126 - e;
        const uint32_t rem = m & ((1u << shift) - 1);
        const uint32_t halfway = 1u << (shift - 1);
        uint32_t r = m >> shift;
        if (rem > halfway || (rem == halfway && (r & 1u))) ++r;
        return uint16_t(sign | r);
    }
    uint32_t r = ((abs - 0x38000000u) >> 13);                        // rebias 127 -> 15
    const uint32_t rem = abs & 0x1FFFu;
    if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) ++r;
    return uint16_t(sign | r);
}

// bfloat16 = upper half of a float32; narrowing rounds to nearest even as ggml does.
constexpr float bf16_to_fp32(uint16_t h) noexcept { return std::bit_cast<float>(uint32_t(h) << 16); }
constexpr uint16_t fp32_to_bf16(float f) noexcept {
    const uint32_t x = std::bit_cast<uint32_t>(f);
    if ((x & 0x7FFFFFFFu) > 0x7F800000u) return uint16_t((x >> 16) | 64u); // quiet nan
    return uint16_t((x + (0x7FFFu + ((x >> 16) & 1u))) >> 16);
}

// --- block layouts (MODEL-SPEC.md §3.6) --------------------------------------------------
struct block_q8_0 {
    uint16_t d;        // fp16 scale
    int8_t qs[k_qk];   // y = d * qs
};
struct block_q4_0 {
    uint16_t d;             // fp16 scale
    uint8_t qs[k_qk / 2];   // low nibbles: elements 0..15, high nibbles: 16..31; y = d * (q - 8)
};
struct block_q4_1 {
    uint16_t d, m;          // fp16 scale and offset
    uint8_t qs[k_qk / 2];   // nibbles as Q4_0; y = d * q + m
};
struct block_q5_0 {
    uint16_t d;             // fp16 scale
    uint8_t qh[4];          // bit e (u32, little-endian) is bit 4 of element e
    uint8_t qs[k_qk / 2];   // low 4 bits, nibbles as Q4_0; y = d * (q - 16)
};
struct block_q5_1 {
    uint16_t d, m;          // fp16 scale and offset
    uint8_t qh[4];          // as Q5_0
    uint8_t qs[k_qk / 2];   // y = d * q + m
};
struct block_iq4_nl {
    uint16_t d;             // fp16 scale
    uint8_t qs[k_qk / 2];   // nibbles as Q4_0, each an index into k_iq4_nl_values; y = d * value
};
// IQ4_NL's 16 levels: a non-linear grid, denser near zero where weights cluster.
inline constexpr int8_t k_iq4_nl_values[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                               1,    13,   25,  38,  53,  69,  89,  113};
// The two smallest K-quants, 16 sub-blocks of 16 elements each (ggml-common.h). Quants of 2 bits
// sit four to a byte: byte l of a 32-byte group g (g < 2: elements 128g..128g+127) holds element
// 128g + 32s + l in bits 2s, 2s+1 (s < 4).
struct block_q2_k {
    uint8_t scales[k_qk_k / 16];       // sub-block j: low nibble scale, high nibble min
    uint8_t qs[k_qk_k / 4];            // 2-bit quants 0..3
    uint16_t d, dmin;                  // fp16 super-block scales (last); y = d·sc·q − dmin·m
};
struct block_q3_k {
    uint8_t hmask[k_qk_k / 8];         // third bits: element 32s + l (s < 8) is bit s of hmask[l]
    uint8_t qs[k_qk_k / 4];            // low 2 bits, laid out as Q2_K's
    uint8_t scales[k_k_scale_bytes];   // 16 packed 6-bit scales sc, stored + 32 (unpack_k3_scales)
    uint16_t d;                        // fp16 super-block scale (last); y = d·(sc − 32)·(q − 4·!hbit)
};
// IQ4_NL's levels in super-blocks of 256: 8 sub-blocks of 32, each with a 6-bit scale ls
// (stored + 32: low 4 bits in scales_l, nibble j % 2 of byte j / 2; top 2 bits at bit 2j of
// scales_h), nibbles as Q4_0's per sub-block; y = d · (ls − 32) · k_iq4_nl_values[q].
struct block_iq4_xs {
    uint16_t d;                        // fp16 super-block scale
    uint16_t scales_h;
    uint8_t scales_l[k_qk_k / 64];
    uint8_t qs[k_qk_k / 2];            // sub-block j: qs[16j..16j+15], low nibbles first
};
struct block_q4_k {
    uint16_t d, dmin;                  // fp16 super-block scales
    uint8_t scales[k_k_scale_bytes];   // 8 packed 6-bit (scale, min) pairs
    uint8_t qs[k_qk_k / 2];
};
struct block_q5_k {
    uint16_t d, dmin;
    uint8_t scales[k_k_scale_bytes];
    uint8_t qh[k_qk_k / 8];            // fifth bits
    uint8_t qs[k_qk_k / 2];
};
struct block_q6_k {
    uint8_t ql[k_qk_k / 2];            // low 4 bits
    uint8_t qh[k_qk_k / 4];            // high 2 bits
    int8_t scales[k_qk_k / 16];        // 8-bit sub-block scales
    uint16_t d;                        // fp16 super-block scale (last)
};
static_assert(sizeof(block_q8_0) == 34 && sizeof(block_q4_0) == 18 && sizeof(block_q4_1) == 20);
static_assert(sizeof(block_q5_0) == 22 && sizeof(block_q5_1) == 24 && sizeof(block_iq4_nl) == 18);
static_assert(sizeof(block_q2_k) == 84 && sizeof(block_q3_k) == 110 && sizeof(block_iq4_xs) == 136);
static_assert(sizeof(block_q4_k) == 144 && sizeof(block_q5_k) == 176 && sizeof(block_q6_k) == 210);

// --- traits ------------------------------------------------------------------------------
struct dtype_traits {
    std::string_view name;
    int64_t block_size;   // elements per block (1 for plain types)
    int64_t block_bytes;  // bytes per block
    bool quantized;
};

constexpr std::optional<dtype> dtype_from_ggml(uint32_t id) noexcept {
    switch (id) {
    case 0: case 1: case 2: case 3: case 6: case 7: case 8: case 10: case 11: case 12: case 13: case 14: case 20: case 23:
    case 30:
        return dtype(id);
    default: return std::nullopt;
    }
}

constexpr dtype_traits traits(dtype t) noexcept {
    switch (t) {
    case dtype::f32: return {"f32", 1, 4, false};
    case dtype::f16: return {"f16", 1, 2, false};
    case dtype::bf16: return {"bf16", 1, 2, false};
    case dtype::q8_0: return {"q8_0", k_qk, sizeof(block_q8_0), true};
    case dtype::q4_0: return {"q4_0", k_qk, sizeof(block_q4_0), true};
    case dtype::q4_1: return {"q4_1", k_qk, sizeof(block_q4_1), true};
    case dtype::q5_0: return {"q5_0", k_qk, sizeof(block_q5_0), true};
    case dtype::q5_1: return {"q5_1", k_qk, sizeof(block_q5_1), true};
    case dtype::iq4_nl: return {"iq4_nl", k_qk, sizeof(block_iq4_nl), true};
    case dtype::iq4_xs: return {"iq4_xs", k_qk_k, sizeof(block_iq4_xs), true};
    case dtype::q2_k: return {"q2_k", k_qk_k, sizeof(block_q2_k), true};
    case dtype::q3_k: return {"q3_k", k_qk_k, sizeof(block_q3_k), true};
    case dtype::q4_k: return {"q4_k", k_qk_k, sizeof(block_q4_k), true};
    case dtype::q5_k: return {"q5_k", k_qk_k, sizeof(block_q5_k), true};
    case dtype::q6_k: return {"q6_k", k_qk_k, sizeof(block_q6_k), true};
    case dtype::q4_0_repacked: return {"q4_0_repacked", k_qk, sizeof(block_q4_0), true};
    case dtype::q5_0_repacked: return {"q5_0_repacked", k_qk, sizeof(block_q5_0), true};
    case dtype::iq4_nl_repacked: return {"iq4_nl_repacked", k_qk, sizeof(block_iq4_nl), true};
    case dtype::q4_1_repacked: return {"q4_1_repacked", k_qk, sizeof(block_q4_1), true};
    case dtype::q5_1_repacked: return {"q5_1_repacked", k_qk, sizeof(block_q5_1), true};
    }
    return {"?", 1, 0, false};
}

constexpr std::string_view dtype_name(dtype t) noexcept { return traits(t).name; }

// Bytes taken by one row of n elements; n must be a multiple of the block size.
constexpr int64_t row_bytes(dtype t, int64_t n) noexcept {
    const auto tr = traits(t);
    return n / tr.block_size * tr.block_bytes;
}

// Unpacks the j-th (scale, min) 6-bit pair of a Q4_K/Q5_K super-block (ggml's get_scale_min_k4).
constexpr void k_scale_min(int j, const uint8_t * s, uint8_t & sc, uint8_t & mn) noexcept {
    if (j < 4) {
        sc = s[j] & 63;
        mn = s[j + 4] & 63;
    } else {
        sc = uint8_t((s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4));
        mn = uint8_t((s[j + 4] >> 4) | ((s[j] >> 6) << 4));
    }
}

} // namespace frugal
