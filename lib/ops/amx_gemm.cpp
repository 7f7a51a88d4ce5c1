// amx_gemm.cpp - see amx_gemm.hpp. Built for baseline x86-64; the kernel carries its own target
// attribute and runs only where bf16_available() says.
#include "ops/amx_gemm.hpp"

#include <algorithm>
#include <cstring>

#include "ops/gemm_pack.hpp"
#include "ops/quant.hpp"
#include "util/error.hpp"

#if defined(__x86_64__) && defined(__linux__)
#  define FRUGAL_HAVE_AMX 1
// GCC 12's AVX-512 headers build "undefined" pass-through operands as `__m512 __Y = __Y;`, which
// -W(maybe-)uninitialized reports once inlined (see quant_avx512.cpp).
#  pragma GCC diagnostic ignored "-Wuninitialized"
#  pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#  include <cpuid.h>
#  include <immintrin.h>
#  include <sys/syscall.h>
#  include <unistd.h>

#  include "ops/bf16_avx512.hpp"
#endif

namespace frugal::ops::amx {

#if defined(FRUGAL_HAVE_AMX)
namespace {

#  define FRUGAL_AMX __attribute__((target("amx-tile,amx-bf16")))

// LDTILECFG's 64-byte operand, palette 1.
struct alignas(64) tile_config {
    uint8_t palette = 1;
    uint8_t start_row = 0;
    uint8_t reserved[14] = {};
    uint16_t colsb[16] = {};
    uint8_t rows[16] = {};
};

// The tiles, all 16 rows of 64 bytes: 0-3 output (0: rows 0-15 × columns 0-15, 1: rows 0-15 ×
// 16-31, 2: rows 16-31 × 0-15, 3: rows 16-31 × 16-31, F32), 4-5 activations (rows 0-15, 16-31;
// 32 BF16 of K each), 6-7 weights (columns 0-15, 16-31; 16 words of BF16 pairs along K each).
constexpr tile_config k_tiles = [] {
    tile_config c;
    for (int t = 0; t < 8; ++t) c.colsb[t] = 64, c.rows[t] = 16;
    return c;
}();

constexpr int64_t k_step = 32;                                  // K values per TDPBF16PS
constexpr int64_t k_block_rows = 32;                            // activation rows per block
constexpr int64_t k_step_values = k_block_rows * k_step;        // a block's step in the packed activations
constexpr int64_t k_panel_row_bytes = gemm_pack::panel_cols * 4; // a panel's row: one word of 64 columns
constexpr int64_t k_step_bytes = k_step / 2 * k_panel_row_bytes; // a step's 16 panel rows
// K values per pass over the output tiles: the weights' piece of a 128-column chunk (256 KiB)
// stays in L2 while every block of rows reads it. Longer pieces load and store the output
// tiles less often: K = 1536 in one piece ran 834 → 984 GFLOP/s from 256 (one thread).
constexpr int64_t k_piece = 4096;

// GCC 12's tile intrinsics tell the compiler less than they touch: _tile_loadconfig reads 8 of
// its 64 bytes, _tile_loadd no memory at all. This barrier makes every store before it (the
// configuration, the packed activations, the edge copies, y) happen before the tile
// instructions after it.
inline void memory_barrier() { __asm__ volatile("" ::: "memory"); }

// c[32, 32] (ldc floats apart) = (load_c ? c : 0) + the steps of a block of packed activations
// from a · the panel words from b (32 columns, a step's 16 rows k_step_bytes on).
FRUGAL_AMX void block(const uint16_t * a, const std::byte * b, int64_t steps, float * c, int64_t ldc, bool load_c) {
    constexpr size_t a_stride = k_step * 2;
    const size_t c_stride = size_t(ldc) * 4;
    float * c_hi = c + 16 * ldc;
    memory_barrier();
    if (load_c) {
        _tile_loadd(0, c, c_stride);
        _tile_loadd(1, c + 16, c_stride);
        _tile_loadd(2, c_hi, c_stride);
        _tile_loadd(3, c_hi + 16, c_stride);
    } else {
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
    }
    for (int64_t s = 0; s < steps; ++s, a += k_step_values, b += k_step_bytes) {
        _tile_loadd(4, a, a_stride);
        _tile_loadd(6, b, k_panel_row_bytes);
        _tile_dpbf16ps(0, 4, 6);
        _tile_loadd(7, b + 64, k_panel_row_bytes);
        _tile_dpbf16ps(1, 4, 7);
        _tile_loadd(5, a + 16 * k_step, a_stride);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
    _tile_stored(0, c, c_stride);
    _tile_stored(1, c + 16, c_stride);
    _tile_stored(2, c_hi, c_stride);
    _tile_stored(3, c_hi + 16, c_stride);
}

FRUGAL_AMX void load_config(const tile_config & c) {
    memory_barrier();
    _tile_loadconfig(&c);
}
FRUGAL_AMX void release_tiles() { _tile_release(); }

FRUGAL_AVX512_BF16 void pack_rows(const float * x, int64_t ldx, int64_t m, int64_t k, uint16_t * packed, bool split) {
    const int64_t parts = split ? 3 : 1; // packed steps per step of x
    for (int64_t b = 0; b * k_block_rows < m; ++b) {
        const int64_t rows = std::min(k_block_rows, m - b * k_block_rows);
        uint16_t * to = packed + b * k_block_rows * k * parts;
        for (int64_t s = 0; s < k / k_step; ++s, to += parts * k_step_values) {
            for (int64_t r = 0; r < rows; ++r) {
                const float * from = x + (b * k_block_rows + r) * ldx + s * k_step;
                const __m512 f0 = _mm512_loadu_ps(from), f1 = _mm512_loadu_ps(from + 16);
                if (!split) {
                    _mm512_storeu_si512(to + r * k_step, bf16_avx512::pairs(f0, f1));
                    continue;
                }
                __m512i hi, lo;
                bf16_avx512::split(f0, f1, hi, lo);
                _mm512_storeu_si512(to + r * k_step, hi);
                _mm512_storeu_si512(to + k_step_values + r * k_step, hi);
                _mm512_storeu_si512(to + 2 * k_step_values + r * k_step, lo);
            }
            for (int64_t p = 0; p < parts; ++p)
                std::fill(to + p * k_step_values + rows * k_step, to + (p + 1) * k_step_values, uint16_t(0));
        }
    }
}

bool cpu_has_amx_bf16() {
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return false;
    constexpr unsigned amx_bf16 = 1u << 22, amx_tile = 1u << 24;
    return (edx & amx_bf16) && (edx & amx_tile);
}

} // namespace

bool bf16_available() {
    static const bool ok = [] {
        if (!detail::avx512_bf16_supported() || !cpu_has_amx_bf16()) return false;
        constexpr long arch_req_xcomp_perm = 0x1023, xfeature_xtiledata = 18; // Linux 5.16+, asm/prctl.h
        return syscall(SYS_arch_prctl, arch_req_xcomp_perm, xfeature_xtiledata) == 0;
    }();
    return ok;
}

int64_t packed_elements(int64_t m, int64_t k) { return (m + k_block_rows - 1) / k_block_rows * k_block_rows * k; }

void pack_activations(const float * x, int64_t ldx, int64_t m, int64_t k, uint16_t * packed, bool split) {
    if (k % k_step != 0 || !bf16_available())
        throw_error(status::internal, "amx: pack_activations with k={} (a multiple of 32 on an AMX CPU)", k);
    pack_rows(x, ldx, m, k, packed, split);
}

void gemm_bf16_panels(const uint16_t * packed, int64_t m, int64_t k, int64_t k0, int64_t kc, const std::byte * panels,
                      int64_t cols, float * y, int64_t ldy, bool accumulate) {
    if (k % k_step != 0 || k0 % k_step != 0 || kc % k_step != 0 || k0 + kc > k || !bf16_available())
        throw_error(status::internal, "amx: gemm_bf16_panels with k={}, k0={}, kc={} (multiples of 32 on an AMX CPU)",
                    k, k0, kc);
    load_config(k_tiles);
    const int64_t panel_bytes = kc / 2 * k_panel_row_bytes;
    alignas(64) float edge[k_block_rows * 32]; // a block's output past m or `cols`, by way of a copy
    for (int64_t p0 = 0; p0 < kc; p0 += k_piece) {
        const int64_t steps = std::min(k_piece, kc - p0) / k_step;
        const bool load_c = accumulate || p0 > 0;
        for (int64_t m0 = 0; m0 < m; m0 += k_block_rows) {
            const int64_t rows = std::min(k_block_rows, m - m0);
            const uint16_t * a = packed + m0 * k + (k0 + p0) / k_step * k_step_values;
            for (int64_t n0 = 0; n0 < cols; n0 += 32) {
                const std::byte * b = panels + n0 / gemm_pack::panel_cols * panel_bytes +
                                      n0 % gemm_pack::panel_cols * 4 + p0 / k_step * k_step_bytes;
                const int64_t width = std::min<int64_t>(32, cols - n0);
                float * yb = y + m0 * ldy + n0;
                const bool direct = width == 32 && rows == k_block_rows;
                float * c = direct ? yb : edge;
                if (!direct && load_c)
                    for (int64_t i = 0; i < rows; ++i) std::memcpy(edge + i * 32, yb + i * ldy, size_t(width) * 4);
                block(a, b, steps, c, direct ? ldy : 32, load_c);
                if (!direct)
                    for (int64_t i = 0; i < rows; ++i) std::memcpy(yb + i * ldy, edge + i * 32, size_t(width) * 4);
            }
        }
    }
    release_tiles();
}

#else

bool bf16_available() { return false; }
int64_t packed_elements(int64_t m, int64_t k) { return m * k; }
void pack_activations(const float *, int64_t, int64_t, int64_t k, uint16_t *, bool) {
    throw_error(status::internal, "amx: pack_activations with k={} on a build without AMX", k);
}
void gemm_bf16_panels(const uint16_t *, int64_t, int64_t k, int64_t, int64_t, const std::byte *, int64_t, float *,
                      int64_t, bool) {
    throw_error(status::internal, "amx: gemm_bf16_panels with k={} on a build without AMX", k);
}

#endif

} // namespace frugal::ops::amx
