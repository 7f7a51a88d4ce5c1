// quant_ref.cpp - see quant_ref.hpp. Block layouts by byte offset, as MODEL-SPEC.md §3.6 lists them.
#include "reference/quant_ref.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <stdexcept>

namespace frugal::ref {
namespace {

float half_at(const uint8_t * p) { return fp16_to_fp32(uint16_t(p[0] | p[1] << 8)); }

void put_half(uint8_t * p, float v) {
    const uint16_t h = fp32_to_fp16(v);
    p[0] = uint8_t(h & 0xFF);
    p[1] = uint8_t(h >> 8);
}

// get_scale_min_k4, straight from the spec text.
void scale_min(int j, const uint8_t * s, int & sc, int & mn) {
    if (j < 4) {
        sc = s[j] & 63;
        mn = s[j + 4] & 63;
    } else {
        sc = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
        mn = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

// Q4_K (144 B: d, dmin, scales[12], qs[128]) and Q5_K (176 B: d, dmin, scales[12], qh[32], qs[128]).
void dequant_q45k(const uint8_t * b, float * y, bool q5) {
    const float d = half_at(b), dmin = half_at(b + 2);
    const uint8_t * scales = b + 4;
    const uint8_t * qh = b + 16;
    const uint8_t * qs = q5 ? b + 48 : b + 16;
    for (int c = 0; c < 4; ++c) {
        int sc1, mn1, sc2, mn2;
        scale_min(2 * c, scales, sc1, mn1);
        scale_min(2 * c + 1, scales, sc2, mn2);
        const float d1 = d * float(sc1), m1 = dmin * float(mn1);
        const float d2 = d * float(sc2), m2 = dmin * float(mn2);
        const uint8_t * q = qs + 32 * c;
        const int u1 = 1 << (2 * c), u2 = 2 << (2 * c);
        for (int l = 0; l < 32; ++l) {
            int lo = q[l] & 0xF, hi = q[l] >> 4;
            if (q5) {
                lo += (qh[l] & u1) ? 16 : 0;
                hi += (qh[l] & u2) ? 16 : 0;
            }
            y[64 * c + l] = d1 * float(lo) - m1;
            y[64 * c + 32 + l] = d2 * float(hi) - m2;
        }
    }
}

// The 32 5-bit quants of a Q5_0/Q5_1 block from its qh (u32 little-endian) and the 16 qs bytes
// that follow it: x0 = (qs[j] & 0xF) | ((qh >> j) << 4 & 0x10), x1 = (qs[j] >> 4) | (qh >> (j + 12) & 0x10).
void q5_quants(const uint8_t * qh_qs, int * x) {
    const uint32_t qh = uint32_t(qh_qs[0]) | uint32_t(qh_qs[1]) << 8 | uint32_t(qh_qs[2]) << 16 |
                        uint32_t(qh_qs[3]) << 24;
    const uint8_t * qs = qh_qs + 4;
    for (int j = 0; j < 16; ++j) {
        x[j] = int((qs[j] & 0xF) | (((qh >> j) << 4) & 0x10));
        x[j + 16] = int((qs[j] >> 4) | ((qh >> (j + 12)) & 0x10));
    }
}

// IQ4_NL's levels, from the spec text.
constexpr int k_iq4_nl[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

// Q6_K (210 B: ql[128], qh[64], int8 scales[16], d last).
void dequant_q6k(const uint8_t * b, float * y) {
    const float d = half_at(b + 208);
    for (int half = 0; half < 2; ++half) {
        const uint8_t * ql = b + 64 * half;
        const uint8_t * qh = b + 128 + 32 * half;
        const int8_t * sc = reinterpret_cast<const int8_t *>(b + 192 + 8 * half);
        float * out = y + 128 * half;
        for (int l = 0; l < 32; ++l) {
            const int is = l / 16;
            const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
            const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
            const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            out[l] = d * float(sc[is]) * float(q1);
            out[l + 32] = d * float(sc[is + 2]) * float(q2);
            out[l + 64] = d * float(sc[is + 4]) * float(q3);
            out[l + 96] = d * float(sc[is + 6]) * float(q4);
        }
    }
}

// Q2_K (84 B: scales[16], qs[64], d, dmin) and Q3_K (110 B: hmask[32], qs[64], scales[12], d),
// element by element as ggml's dequantize_row_q2_K / _q3_K walk them: two groups of 128, each
// of four shifts (0, 2, 4, 6) over 32 quant bytes, each shift two runs of 16 elements with a
// scale of their own; Q3_K's third bit is bit m of hmask, m counting the 8 shifts.
void dequant_q2k(const uint8_t * b, float * y) {
    const float d = half_at(b + 80), dmin = half_at(b + 82);
    int is = 0;
    for (int n = 0; n < 2; ++n)
        for (int shift = 0; shift < 8; shift += 2)
            for (int run = 0; run < 2; ++run, ++is) {
                const uint8_t sc = b[is];
                for (int l = 0; l < 16; ++l) {
                    const int q = (b[16 + 32 * n + 16 * run + l] >> shift) & 3;
                    *y++ = d * float(sc & 0xF) * float(q) - dmin * float(sc >> 4);
                }
            }
}

// Q3_K scale j (0..15, less 32): ggml's kmask shuffle written out per scale.
int q3k_scale(const uint8_t * s, int j) {
    int low, high;
    if (j < 4) {
        low = s[j] & 0xF;
        high = (s[8 + j] >> 0) & 3;
    } else if (j < 8) {
        low = s[j] & 0xF;
        high = (s[8 + j - 4] >> 2) & 3;
    } else if (j < 12) {
        low = s[j - 8] >> 4;
        high = (s[8 + j - 8] >> 4) & 3;
    } else {
        low = s[j - 8] >> 4;
        high = (s[8 + j - 12] >> 6) & 3;
    }
    return (low | high << 4) - 32;
}

void dequant_q3k(const uint8_t * b, float * y) {
    const uint8_t * hmask = b;
    const float d = half_at(b + 108);
    int is = 0, m = 0;
    for (int n = 0; n < 2; ++n)
        for (int shift = 0; shift < 8; shift += 2, ++m)
            for (int run = 0; run < 2; ++run, ++is)
                for (int l = 0; l < 16; ++l) {
                    const int e = 16 * run + l;
                    const int q = ((b[32 + 32 * n + e] >> shift) & 3) - ((hmask[e] >> m) & 1 ? 0 : 4);
                    *y++ = d * float(q3k_scale(b + 96, is)) * float(q);
                }
}

// IQ4_XS (136 B: d, scales_h (u16), scales_l[4], qs[128]): sub-block ib of 32 takes scale
// ls = (scales_l[ib / 2] >> 4 · (ib % 2) & 0xF) | ((scales_h >> 2 · ib) & 3) << 4 and the 16
// bytes qs[16 · ib..]: low nibbles its first 16 elements, high nibbles its last 16.
void dequant_iq4xs(const uint8_t * b, float * y) {
    const float d = half_at(b);
    const int scales_h = b[2] | b[3] << 8;
    for (int ib = 0; ib < 8; ++ib) {
        const int ls = ((b[4 + ib / 2] >> (4 * (ib % 2))) & 0xF) | (((scales_h >> (2 * ib)) & 3) << 4);
        const float dl = d * float(ls - 32);
        const uint8_t * qs = b + 8 + 16 * ib;
        for (int j = 0; j < 16; ++j) {
            y[32 * ib + j] = dl * float(k_iq4_nl[qs[j] & 0xF]);
            y[32 * ib + j + 16] = dl * float(k_iq4_nl[qs[j] >> 4]);
        }
    }
}

} // namespace

std::vector<float> dequantize(dtype t, const uint8_t * src, int64_t n) {
    std::vector<float> y(static_cast<size_t>(n));
    switch (t) {
    case dtype::f32:
        for (int64_t i = 0; i < n; ++i) {
            uint32_t u = uint32_t(src[4 * i]) | uint32_t(src[4 * i + 1]) << 8 | uint32_t(src[4 * i + 2]) << 16 |
                         uint32_t(src[4 * i + 3]) << 24;
            y[size_t(i)] = std::bit_cast<float>(u);
        }
        break;
    case dtype::f16:
        for (int64_t i = 0; i < n; ++i) y[size_t(i)] = half_at(src + 2 * i);
        break;
    case dtype::bf16:
        for (int64_t i = 0; i < n; ++i) y[size_t(i)] = bf16_to_fp32(uint16_t(src[2 * i] | src[2 * i + 1] << 8));
        break;
    case dtype::q8_0:
        for (int64_t ib = 0; ib < n / 32; ++ib) {
            const uint8_t * b = src + 34 * ib;
            const float d = half_at(b);
            for (int j = 0; j < 32; ++j) y[size_t(32 * ib + j)] = d * float(int8_t(b[2 + j]));
        }
        break;
    case dtype::q4_0:
        for (int64_t ib = 0; ib < n / 32; ++ib) {
            const uint8_t * b = src + 18 * ib;
            const float d = half_at(b);
            for (int j = 0; j < 16; ++j) {
                y[size_t(32 * ib + j)] = d * float((b[2 + j] & 0xF) - 8);
                y[size_t(32 * ib + j + 16)] = d * float((b[2 + j] >> 4) - 8);
            }
        }
        break;
    case dtype::q4_1: // half d, half m, 16 nibble bytes: y = q·d + m
        for (int64_t ib = 0; ib < n / 32; ++ib) {
            const uint8_t * b = src + 20 * ib;
            const float d = half_at(b), m = half_at(b + 2);
            for (int j = 0; j < 16; ++j) {
                y[size_t(32 * ib + j)] = float(b[4 + j] & 0xF) * d + m;
                y[size_t(32 * ib + j + 16)] = float(b[4 + j] >> 4) * d + m;
            }
        }
        break;
    case dtype::q5_0:
        for (int64_t ib = 0; ib < n / 32; ++ib) {
            const uint8_t * b = src + 22 * ib;
            const float d = half_at(b);
            int x[32];
            q5_quants(b + 2, x);
            for (int j = 0; j < 32; ++j) y[size_t(32 * ib + j)] = d * float(x[j] - 16);
        }
        break;
    case dtype::q5_1:
        for (int64_t ib = 0; ib < n / 32; ++ib) {
            const uint8_t * b = src + 24 * ib;
            const float d = half_at(b), m = half_at(b + 2);
            int x[32];
            q5_quants(b + 4, x);
            for (int j = 0; j < 32; ++j) y[size_t(32 * ib + j)] = float(x[j]) * d + m;
        }
        break;
    case dtype::iq4_nl:
        for (int64_t ib = 0; ib < n / 32; ++ib) {
            const uint8_t * b = src + 18 * ib;
            const float d = half_at(b);
            for (int j = 0; j < 16; ++j) {
                y[size_t(32 * ib + j)] = d * float(k_iq4_nl[b[2 + j] & 0xF]);
                y[size_t(32 * ib + j + 16)] = d * float(k_iq4_nl[b[2 + j] >> 4]);
            }
        }
        break;
    case dtype::q2_k:
        for (int64_t ib = 0; ib < n / 256; ++ib) dequant_q2k(src + 84 * ib, y.data() + 256 * ib);
        break;
    case dtype::iq4_xs:
        for (int64_t ib = 0; ib < n / 256; ++ib) dequant_iq4xs(src + 136 * ib, y.data() + 256 * ib);
        break;
    case dtype::q3_k:
        for (int64_t ib = 0; ib < n / 256; ++ib) dequant_q3k(src + 110 * ib, y.data() + 256 * ib);
        break;
    case dtype::q4_k:
        for (int64_t ib = 0; ib < n / 256; ++ib) dequant_q45k(src + 144 * ib, y.data() + 256 * ib, false);
        break;
    case dtype::q5_k:
        for (int64_t ib = 0; ib < n / 256; ++ib) dequant_q45k(src + 176 * ib, y.data() + 256 * ib, true);
        break;
    case dtype::q6_k:
        for (int64_t ib = 0; ib < n / 256; ++ib) dequant_q6k(src + 210 * ib, y.data() + 256 * ib);
        break;
    default: throw std::invalid_argument("ref::dequantize: unsupported type");
    }
    return y;
}

q8_row quantize_q8_0(const float * x, int64_t n) {
    q8_row r;
    r.block = 32;
    for (int64_t ib = 0; ib < n / 32; ++ib) {
        float amax = 0.f;
        for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[32 * ib + j]));
        r.d.push_back(fp16_to_fp32(fp32_to_fp16(amax / 127.f)));
        const float id = amax != 0.f ? 127.f / amax : 0.f;
        for (int j = 0; j < 32; ++j) r.qs.push_back(int8_t(std::nearbyint(x[32 * ib + j] * id)));
    }
    return r;
}

q8_row quantize_q8_1(const float * x, int64_t n) {
    q8_row r = quantize_q8_0(x, n);
    for (int64_t ib = 0; ib < n / 32; ++ib) {
        float amax = 0.f;
        int sum = 0;
        for (int j = 0; j < 32; ++j) {
            amax = std::max(amax, std::fabs(x[32 * ib + j]));
            sum += r.qs[size_t(32 * ib + j)];
        }
        r.s.push_back(fp16_to_fp32(fp32_to_fp16(amax / 127.f * float(sum))));
    }
    return r;
}

q8_row quantize_q8_k(const float * x, int64_t n) {
    q8_row r;
    r.block = 256;
    for (int64_t ib = 0; ib < n / 256; ++ib) {
        const float * xb = x + 256 * ib;
        float amax = 0.f, max = 0.f;
        for (int j = 0; j < 256; ++j) {
            if (std::fabs(xb[j]) > amax) {
                amax = std::fabs(xb[j]);
                max = xb[j];
            }
        }
        if (amax == 0.f) {
            r.d.push_back(0.f);
            r.qs.insert(r.qs.end(), 256, int8_t(0));
        } else {
            const float iscale = -127.f / max;
            for (int j = 0; j < 256; ++j)
                r.qs.push_back(int8_t(std::min(127.f, std::nearbyint(iscale * xb[j]))));
            r.d.push_back(1.f / iscale);
        }
        for (int g = 0; g < 16; ++g) {
            int s = 0;
            for (int l = 0; l < 16; ++l) s += r.qs[size_t(256 * ib + 16 * g + l)];
            r.bsums.push_back(s);
        }
    }
    return r;
}

std::vector<double> activation_values(dtype t, const float * x, int64_t n) {
    std::vector<double> a(static_cast<size_t>(n));
    q8_row q;
    switch (t) {
    case dtype::f32:
        for (int64_t i = 0; i < n; ++i) a[size_t(i)] = x[i];
        return a;
    case dtype::f16:
        for (int64_t i = 0; i < n; ++i) a[size_t(i)] = fp16_to_fp32(fp32_to_fp16(x[i]));
        return a;
    case dtype::bf16:
        for (int64_t i = 0; i < n; ++i) a[size_t(i)] = bf16_to_fp32(fp32_to_bf16(x[i]));
        return a;
    case dtype::q8_0:
    case dtype::q4_0:
    case dtype::q5_0:
    case dtype::iq4_nl: q = quantize_q8_0(x, n); break;
    case dtype::q4_1:
    case dtype::q5_1: q = quantize_q8_1(x, n); break;
    case dtype::q2_k:
    case dtype::q3_k:
    case dtype::q4_k:
    case dtype::q5_k:
    case dtype::q6_k:
    case dtype::iq4_xs: q = quantize_q8_k(x, n); break;
    default: throw std::invalid_argument("ref::activation_values: unsupported type");
    }
    for (int64_t i = 0; i < n; ++i) a[size_t(i)] = double(q.d[size_t(i / q.block)]) * q.qs[size_t(i)];
    return a;
}

dot_result dot(dtype t, const uint8_t * w, const float * x, int64_t n) {
    const std::vector<double> a = activation_values(t, x, n);
    dot_result r{0.0, 0.0};
    const auto add = [&](double p) {
        r.value += p;
        r.abs_sum += std::fabs(p);
    };
    if (t == dtype::q4_1 || t == dtype::q5_1) { // d·q against the quants, m against Q8_1's s
        const q8_row q = quantize_q8_1(x, n);
        const int64_t bytes = t == dtype::q4_1 ? 20 : 24;
        for (int64_t ib = 0; ib < n / 32; ++ib) {
            const uint8_t * b = w + bytes * ib;
            int xq[32];
            if (t == dtype::q4_1) {
                for (int j = 0; j < 16; ++j) xq[j] = b[4 + j] & 0xF, xq[j + 16] = b[4 + j] >> 4;
            } else {
                q5_quants(b + 4, xq);
            }
            for (int j = 0; j < 32; ++j) add(double(half_at(b)) * xq[j] * a[size_t(32 * ib + j)]);
            add(double(half_at(b + 2)) * q.s[size_t(ib)]);
        }
        return r;
    }
    const std::vector<float> wf = dequantize(t, w, n);
    for (size_t i = 0; i < size_t(n); ++i) add(double(wf[i]) * a[i]);
    return r;
}

std::vector<uint8_t> quantize_q8_0_weights(const float * x, int64_t n) {
    std::vector<uint8_t> out(size_t(n / 32 * 34));
    for (int64_t ib = 0; ib < n / 32; ++ib) {
        float amax = 0.f;
        for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[32 * ib + j]));
        const float d = amax / 127.f;
        const float id = d != 0.f ? 1.f / d : 0.f;
        uint8_t * b = out.data() + 34 * ib;
        put_half(b, d);
        for (int j = 0; j < 32; ++j) b[2 + j] = uint8_t(int8_t(std::round(x[32 * ib + j] * id)));
    }
    return out;
}

std::vector<uint8_t> quantize_q4_0_weights(const float * x, int64_t n) {
    std::vector<uint8_t> out(size_t(n / 32 * 18));
    for (int64_t ib = 0; ib < n / 32; ++ib) {
        const float * xb = x + 32 * ib;
        float amax = 0.f, max = 0.f;
        for (int j = 0; j < 32; ++j) {
            if (amax < std::fabs(xb[j])) {
                amax = std::fabs(xb[j]);
                max = xb[j];
            }
        }
        const float d = max / -8.f;
        const float id = d != 0.f ? 1.f / d : 0.f;
        uint8_t * b = out.data() + 18 * ib;
        put_half(b, d);
        for (int j = 0; j < 16; ++j) {
            const int lo = std::min(15, int(std::trunc(xb[j] * id + 8.5f)));
            const int hi = std::min(15, int(std::trunc(xb[j + 16] * id + 8.5f)));
            b[2 + j] = uint8_t(lo | hi << 4);
        }
    }
    return out;
}

} // namespace frugal::ref
