#include "util/cpu.hpp"

#include <sched.h>
#include <unistd.h>

#include <fstream>
#include <set>
#include <string>
#include <utility>

namespace frugal {
namespace {

bool read_int(const std::string & path, int & out) {
    std::ifstream f(path);
    return static_cast<bool>(f >> out);
}

} // namespace

int physical_cores() {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) != 0) return 1;
    const int allowed = CPU_COUNT(&set);
    // Hyper-threads share a core's execution units: one matmul thread per core is faster.
    std::set<std::pair<int, int>> cores;
    for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
        if (!CPU_ISSET(cpu, &set)) continue;
        const std::string topo = "/sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/topology/";
        int package = 0, core = 0;
        if (!read_int(topo + "physical_package_id", package) || !read_int(topo + "core_id", core))
            return allowed > 0 ? allowed : 1; // no topology (some containers): trust the mask
        cores.emplace(package, core);
    }
    return cores.empty() ? 1 : int(cores.size());
}

uint64_t physical_memory_bytes() {
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
    return pages > 0 && page > 0 ? uint64_t(pages) * uint64_t(page) : 0;
}

} // namespace frugal
