#include "models/kv_cache.hpp"

#include <cstring>
#include <new>

#include "ops/quant.hpp"
#include "util/error.hpp"

namespace frugal {

void require_kv_type(dtype t) {
    if (t != dtype::f32 && t != dtype::f16)
        throw_error(status::invalid_argument, "session: KV cache type {} is not supported (f32, f16)", dtype_name(t));
}

kv_rows::kv_rows(dtype type, int64_t n_ctx, int64_t width) : type_(type), width_(width) {
    require_kv_type(type);
    constexpr size_t k_align = 64;
    const size_t bytes = (size_t(n_ctx) * size_t(width) * elem_bytes() + k_align - 1) / k_align * k_align;
    bytes_.reset(static_cast<std::byte *>(std::aligned_alloc(k_align, bytes)));
    if (!bytes_) throw std::bad_alloc();
}

void kv_rows::write(int64_t pos, const float * x, int64_t n) {
    std::byte * dst = bytes_.get() + size_t(pos * width_) * elem_bytes();
    if (type_ == dtype::f32) std::memcpy(dst, x, size_t(n * width_) * sizeof(float));
    else ops::quantize_activation(dtype::f16, x, dst, n * width_); // F16 rows: round to nearest even
}

void kv_rows::read(int64_t pos, int64_t n, int64_t col0, int64_t cols, float * out) const {
    for (int64_t j = 0; j < n; ++j) {
        const std::byte * src = bytes_.get() + size_t((pos + j) * width_ + col0) * elem_bytes();
        if (type_ == dtype::f32) std::memcpy(out + j * cols, src, size_t(cols) * sizeof(float));
        else ops::dequantize_row(dtype::f16, src, out + j * cols, cols);
    }
}

} // namespace frugal
