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
    // [n_ctx, width] of `type` (f32 or f16, else status::invalid_argument). Not zero-filled:
    // pages are touched as positions are used, so a large context costs memory only as it fills,
    // and positions past n_past are never read.
    kv_rows(dtype type, int64_t n_ctx, int64_t width);

    dtype type() const { return type_; }
    int64_t width() const { return width_; }
    const void * data() const { return bytes_.get(); }

    // Rows [pos, pos + n) = x[n, width], rounded to the cache type.
    void write(int64_t pos, const float * x, int64_t n);
    // out[n, cols] = columns [col0, col0 + cols) of rows [pos, pos + n), as F32.
    void read(int64_t pos, int64_t n, int64_t col0, int64_t cols, float * out) const;

private:
    size_t elem_bytes() const { return size_t(row_bytes(type_, 1)); }

    dtype type_;
    int64_t width_;
    std::unique_ptr<std::byte, decltype(&std::free)> bytes_{nullptr, &std::free};
};

} // namespace frugal
