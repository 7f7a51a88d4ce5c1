#include "models/repacked_weights.hpp"

#include <sys/mman.h>

#include <algorithm>

#include "ops/quant.hpp"
#include "util/log.hpp"

namespace frugal {

repacked_weights::repacked_weights(uint64_t budget) : budget_(budget) {}

void repacked_weights::unmap::operator()(std::byte * p) const { munmap(p, size); }

raw_view repacked_weights::adopt(const gguf::file & f, const raw_view & src, int n_threads) {
    const dtype to = ops::repacked_type(src.type);
    const auto n = size_t(src.n_bytes());
    if (to == src.type || !f.mapped() || n == 0) return src;
    if (bytes_ + n > budget_) {
        skipped_ += n;
        return src;
    }
    // Anonymous pages of its own, so the kernel can back the copy with huge pages (fewer TLB
    // misses while decode streams it) and hand it back whole when the model goes.
    void * p = mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        FRUGAL_LOG_WARN("loader: no memory for a {}-byte repacked copy; the weight stays as mapped", n);
        skipped_ += n;
        return src;
    }
    madvise(p, n, MADV_HUGEPAGE); // advisory
    auto * dst = static_cast<std::byte *>(p);
    regions_.emplace_back(dst, unmap{n});
    const int64_t rows = src.n_rows(), k = src.row_size(), stride = src.row_stride();
    constexpr int64_t k_chunk = 64; // rows per task
#pragma omp parallel for num_threads(std::max(1, n_threads)) schedule(static)
    for (int64_t r0 = 0; r0 < rows; r0 += k_chunk)
        ops::repack_rows(src.type, src.row(r0), dst + r0 * stride, std::min(k_chunk, rows - r0), k);
    f.release({src.data, n});
    bytes_ += n;
    return {to, dst, src.shape};
}

} // namespace frugal
