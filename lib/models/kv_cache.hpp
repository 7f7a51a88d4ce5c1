// kv_cache.hpp - one layer's cache rows (a row per position) in the session's cache type.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>

#include "frugal/dtype.hpp"

namespace frugal {

// The types a KV cache can hold: F16 halves its memory and the bytes a decode step reads at
// depth (llama.cpp's default too); F32 keeps every value as computed.
inline constexpr dtype k_default_kv_type = dtype::f16;
// Throws status::invalid_argument naming t unless a cache can hold it.
void require_kv_type(dtype t);

class kv_rows {
public:
    // Rows of `width` values for n_ctx positions, of `type` (f32 or f16, else
    // status::invalid_argument), split into n_heads heads of width / n_heads stored head-major:
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
    // ...)), rounded to the cache type.
    void write(int64_t pos, const float * x, int64_t n);
    // out[n, cols] = columns [col0, col0 + cols) of positions [pos, pos + n), as F32; the columns
    // lie within one head (status::invalid_argument otherwise).
    void read(int64_t pos, int64_t n, int64_t col0, int64_t cols, float * out) const;

private:
    size_t elem_bytes() const { return size_t(row_bytes(type_, 1)); }
    std::byte * at(int64_t head, int64_t pos) const {
        return bytes_.get() + size_t(head * head_stride() + pos * head_width_) * elem_bytes();
    }

    dtype type_;
    int64_t n_ctx_, width_, head_width_;
    std::unique_ptr<std::byte, decltype(&std::free)> bytes_{nullptr, &std::free};
};

} // namespace frugal
