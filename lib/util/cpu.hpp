// cpu.hpp - what the default thread count and memory limits are based on.
#pragma once

#include <cstdint>

namespace frugal {
// Physical cores this process may run on: CPUs in its affinity mask, with SMT siblings (same
// package and core id) counted once. Falls back to the affinity count, then to 1.
int physical_cores();
// Bytes of physical memory on this machine; 0 when the system does not say.
uint64_t physical_memory_bytes();
} // namespace frugal
