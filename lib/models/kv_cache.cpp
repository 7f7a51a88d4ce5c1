#include "models/kv_cache.hpp"

#include <cstring>
#include <new>

#include "ops/quant.hpp"
#include "util/error.hpp"

namespace frugal {

void require_kv_type(dtype t) {
    if (t != dtype::f32 && t != dtype::f16 && t != dtype::q8_0)
        throw_error(status::invalid_argument, "session: KV cache type {} is not supported (f32, f16, q8_0)",
                    dtype_name(t));
}

kv_rows::kv_rows(dtype type, int64_t n_ctx, int64_t width, int64_t n_heads)
    : type_(type), n_ctx_(n_ctx), width_(width), head_width_(n_heads > 0 ? width / n_heads : 0) {
    require_kv_type(type);
    if (n_heads <= 0 || width <= 0 || width % n_heads != 0)
        throw_error(status::invalid_argument, "kv_rows: {} values a position do not split into {} heads", width, n_heads);
    if (type == dtype::q8_0 && head_width_ % k_qk != 0)
        throw_error(status::invalid_argument,
                    "session: a q8_0 KV cache needs heads a multiple of {} values wide; this model's are {} (use f16)",
                    k_qk, head_width_);
    constexpr size_t k_align = 64;
    const size_t bytes = (size_t(row_bytes(type, n_ctx * width)) + k_align - 1) / k_align * k_align;
    bytes_.reset(static_cast<std::byte *>(std::aligned_alloc(k_align, bytes)));
    if (!bytes_) throw std::bad_alloc();
}

void kv_rows::write(int64_t pos, const float * x, int64_t n) {
    // Runs of values to store: the rows as given with one head, each head's part of a row with more.
    const int64_t n_heads = width_ / head_width_, run = n_heads == 1 ? n * width_ : head_width_;
    const auto store = [&](const float * src, std::byte * dst) {
        if (type_ == dtype::f32) std::memcpy(dst, src, size_t(run) * sizeof(float));
        else ops::quantize_activation(type_, src, dst, run); // F16: nearest even; Q8_0: as its dot's activations
    };
    if (n_heads == 1) return store(x, at(0, pos));
    for (int64_t h = 0; h < n_heads; ++h)
        for (int64_t t = 0; t < n; ++t) store(x + t * width_ + h * head_width_, at(h, pos + t));
}

void kv_rows::read(int64_t pos, int64_t n, int64_t col0, int64_t cols, float * out) const {
    const int64_t head = col0 / head_width_, in_head = col0 - head * head_width_;
    if (col0 < 0 || cols < 0 || in_head + cols > head_width_)
        throw_error(status::invalid_argument, "kv_rows: columns [{}, {}) are not within one head of {}", col0,
                    col0 + cols, head_width_);
    if (type_ == dtype::q8_0 && (col0 % k_qk != 0 || cols % k_qk != 0))
        throw_error(status::invalid_argument, "kv_rows: columns [{}, {}) do not start and end on Q8_0 blocks of {}",
                    col0, col0 + cols, k_qk);
    for (int64_t j = 0; j < n; ++j) {
        const std::byte * src = at(head, pos + j, in_head);
        if (type_ == dtype::f32) std::memcpy(out + j * cols, src, size_t(cols) * sizeof(float));
        else ops::dequantize_row(type_, src, out + j * cols, cols);
    }
}

} // namespace frugal
