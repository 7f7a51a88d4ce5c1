#include "models/repacked_weights.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <atomic>

#include "ops/quant.hpp"
#include "util/cpu.hpp"
#include "util/log.hpp"

namespace frugal {
namespace {
std::atomic<uint64_t> g_process_bytes{0};
} // namespace

repacked_weights::repacked_weights() : repacked_weights(physical_memory_bytes() / 2) {}

repacked_weights::repacked_weights(uint64_t budget) : budget_(budget) {}

repacked_weights::~repacked_weights() { g_process_bytes -= bytes_; }

uint64_t repacked_weights::process_bytes() { return g_process_bytes.load(); }

void repacked_weights::unmap::operator()(std::byte * p) const { munmap(p, size); }

raw_view repacked_weights::adopt(const gguf::file & f, const raw_view & src, int n_threads) {
    const dtype to = ops::repacked_type(src.type);
    const auto n = size_t(src.n_bytes());
    if (to == src.type || policy_ == repack::never || !f.mapped() || n == 0) return src;
    if (policy_ == repack::where_faster && !ops::repacking_speeds_decode(src.type)) return src;
    // Reserve the bytes first, so that models loading on several threads at once cannot all pass.
    if (g_process_bytes.fetch_add(n) + n > budget_) {
        g_process_bytes -= n;
        skipped_ += n;
        return src;
    }
    bytes_ += n; // the destructor gives it back
    // Anonymous pages of its own, handed back whole when the model goes. Not advised into huge
    // pages (MADV_HUGEPAGE): on the 1.5B Q4_0 model they gave decode +10 % on a Zen 3 but +2.6 %
    // on a Zen 5 (4 alternating pairs), and load 0.27 -> 0.6-0.87 s there, where llama.cpp's
    // is 0.6-0.76 s (the kernel spent the time clearing the new pages).
    void * p = mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        FRUGAL_LOG_WARN("loader: no memory for a {}-byte repacked copy; the weight stays as mapped", n);
        bytes_ -= n;
        g_process_bytes -= n;
        skipped_ += n;
        return src;
    }
    std::unique_ptr<std::byte, unmap> region(static_cast<std::byte *>(p), unmap{n});
    std::byte * dst = region.get();
    const int64_t rows = src.n_rows(), k = src.row_size(), stride = src.row_stride();
    constexpr int64_t k_chunk = 64; // rows per task
#pragma omp parallel for num_threads(std::max(1, n_threads)) schedule(static)
    for (int64_t r0 = 0; r0 < rows; r0 += k_chunk)
        ops::repack_rows(src.type, src.row(r0), dst + r0 * stride, std::min(k_chunk, rows - r0), k);
    regions_.push_back(std::move(region));
    f.release({src.data, n});
    return {to, dst, src.shape};
}

} // namespace frugal
