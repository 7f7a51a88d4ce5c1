// kv_cache.hpp - one layer's cache rows (a row per position) in the session's cache type.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>

#include "frugal/dtype.hpp"

namespace frugal {

// The types a KV cache can hold: F16 halves its memory and the bytes a decode step reads at
// depth (llama.cpp's default too); Q8_0 takes 17/64 of F32's (llama.cpp's `-ctk q8_0 -ctv
// q8_0`: blocks of 32 values with an F16 scale, so heads must be whole blocks); F32 keeps every
// value as computed.
inline constexpr dtype k_default_kv_type = dtype::f16;
// Throws status::invalid_argument naming t unless a cache can hold it.
void require_kv_type(dtype t);

class kv_rows {
public:
    // Rows of `width` values for n_ctx positions, of `type` (f32, f16, or q8_0 where a head's
    // width is a multiple of 32; else status::invalid_argument), split into n_heads heads of
    // width / n_heads stored head-major:
    // [n_heads, n_ctx, width / n_heads], each head's positions contiguous, so that a decode step
    // reads a head's keys and values as one stream each (laid out [n_ctx, width], the 1.5B
    // Qwen2's two heads read 256 bytes in every 512). Not zero-filled: pages are touched as
    // positions are used, so a large context costs memory only as it fills, and positions past
    // n_past are never read.
    kv_rows(dtype type, int64_t n_ctx, int64_t width, int64_t n_heads = 1);

    dtype type() const { return type_; }
    int64_t width() const { return width_; }
    const void * data() const { return bytes_.get(); }
    // Elements from one position of a head to the next, and from one head to the next.
    int64_t position_stride() const { return head_width_; }
    int64_t head_stride() const { return n_ctx_ * head_width_; }

    // Positions [pos, pos + n) = x[n, width] (head h's values at columns [h · width / n_heads,
    // ...)), rounded to the cache type (Q8_0: quantized per block of 32 as llama.cpp writes its
    // cache, d = fp16(amax / 127), q = round-half-even(x · 127 / amax)).
    void write(int64_t pos, const float * x, int64_t n);
    // out[n, cols] = columns [col0, col0 + cols) of positions [pos, pos + n), as F32; the columns
    // lie within one head, and in a Q8_0 cache start and end on a block's edge
    // (status::invalid_argument otherwise).
    void read(int64_t pos, int64_t n, int64_t col0, int64_t cols, float * out) const;

private:
    // Where element `offset` of head h's run of positions begins (offset: a block's first in Q8_0).
    std::byte * at(int64_t head, int64_t pos, int64_t offset = 0) const {
        return bytes_.get() + size_t(row_bytes(type_, head * head_stride() + pos * head_width_ + offset));
    }

    dtype type_;
    int64_t n_ctx_, width_, head_width_;
    std::unique_ptr<std::byte, decltype(&std::free)> bytes_{nullptr, &std::free};
};

} // namespace frugal
