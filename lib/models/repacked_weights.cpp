#include "models/repacked_weights.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>

#include "ops/quant.hpp"
#include "util/cpu.hpp"
#include "util/log.hpp"

namespace frugal {
namespace {
std::atomic<uint64_t> g_process_bytes{0};

// Maps the pages under [p, p + n) for writing in one call (Linux 5.14), where the repacking loop
// took one trap per page of its new destination: with the source prefaulted the same way, the
// 1.5B Q4_0 file's load 1.7-1.8 -> 1.1-1.2 s on a Zen 5 VM whose new pages are slow (see
// docs/PERF.md, "Zen 5 (2026-12-02 05:14-)"). Advisory: where the call fails the pages fault in
// as they are touched.
void populate_for_writing([[maybe_unused]] std::byte * p, [[maybe_unused]] size_t n) {
#ifdef MADV_POPULATE_WRITE
    const auto page = uintptr_t(sysconf(_SC_PAGE_SIZE));
    const uintptr_t first = uintptr_t(p) / page * page;
    madvise(reinterpret_cast<void *>(first), uintptr_t(p) + n - first, MADV_POPULATE_WRITE);
#endif
}
} // namespace

repacked_weights::repacked_weights() : repacked_weights(physical_memory_bytes() / 2) {}

repacked_weights::repacked_weights(uint64_t budget) : budget_(budget) {}

repacked_weights::~repacked_weights() { g_process_bytes -= bytes_; }

uint64_t repacked_weights::process_bytes() { return g_process_bytes.load(); }

void repacked_weights::unmap::operator()(std::byte * p) const { munmap(p, size); }

// Copies go one after another into arenas: anonymous memory of the store's own, handed back
// whole when the model goes, advised into huge pages (advisory: where THP is off they stay 4
// KiB). In one arena the matrices smaller than 2 MiB (a 1.5B Qwen2's Q, K, V and O) and the
// ends of the others share huge pages too, where a mapping each left a third of the 1.5B Q4_0's
// copies in 4 KiB pages. Huge pages, the 1.5B Q4_0 model's decode (4 alternating pairs each): +10 %
// on a Zen 3, +2.6 % on a bare Zen 5 VM, and on a Zen 5 under the PVM hypervisor (shadow page
// tables) 13-38 -> 32-41 t/s, where the q8 prefill packer also stalled less on the weights
// (docs/PERF.md, "Zen 5 (2026-12-02 05:14-)"). Load pays for clearing 2 MiB pages: 0.27 -> 0.6-0.87
// s on the bare Zen 5 (llama.cpp, which repacks too: 0.6-0.76 s), 1.3 -> 1.5 s under PVM
// (llama.cpp: 3.3 s).
std::byte * repacked_weights::place(const gguf::file & f, size_t n) {
    constexpr size_t k_page = 4096, k_huge = size_t(2) << 20;
    const size_t need = (n + k_page - 1) / k_page * k_page; // each copy starts on a page
    if (need > left_) {
        // Address space for the copies still to come (at most the file, and the budget): pages
        // are taken only as they are written (MAP_NORESERVE); one copy's own size if even that
        // cannot be had.
        const uint64_t held = g_process_bytes.load(), in_budget = budget_ > held ? budget_ - held : 0;
        size_t size = std::max<size_t>(need, size_t(std::min<uint64_t>(f.file_size(), in_budget + n)));
        size = (size + k_huge - 1) / k_huge * k_huge + k_huge; // and 2 MiB to start on a huge page
        void * p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED) {
            size = need + k_huge;
            p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (p == MAP_FAILED) return nullptr;
        }
        regions_.emplace_back(static_cast<std::byte *>(p), unmap{size});
        auto * start = reinterpret_cast<std::byte *>((uintptr_t(p) + k_huge - 1) / k_huge * k_huge);
        left_ = size_t(static_cast<std::byte *>(p) + size - start);
        madvise(start, left_, MADV_HUGEPAGE);
        next_ = start;
    }
    std::byte * at = next_;
    next_ += need;
    left_ -= need;
    return at;
}

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
    std::byte * dst = place(f, n);
    if (!dst) {
        FRUGAL_LOG_WARN("loader: no memory for a {}-byte repacked copy; the weight stays as mapped", n);
        bytes_ -= n;
        g_process_bytes -= n;
        skipped_ += n;
        return src;
    }
    const int64_t rows = src.n_rows(), k = src.row_size(), stride = src.row_stride();
    // Tasks of about 256 KiB: each maps its destination's pages right before writing them, so
    // the kernel's zeroed lines are still in cache when the copy overwrites them.
    const int64_t k_chunk = std::max<int64_t>(1, (int64_t(256) << 10) / stride); // rows per task
#pragma omp parallel for num_threads(std::max(1, n_threads)) schedule(static)
    for (int64_t r0 = 0; r0 < rows; r0 += k_chunk) {
        const int64_t n_rows = std::min(k_chunk, rows - r0);
        f.prefault({static_cast<const std::byte *>(src.row(r0)), size_t(n_rows * stride)}, 1); // on this thread
        populate_for_writing(dst + r0 * stride, size_t(n_rows * stride));
        ops::repack_rows(src.type, src.row(r0), dst + r0 * stride, n_rows, k);
    }
    f.release({src.data, n});
    return {to, dst, src.shape};
}

} // namespace frugal
