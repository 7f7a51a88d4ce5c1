// cpu.hpp - what the default thread count is based on.
#pragma once

namespace frugal {
// Physical cores this process may run on: CPUs in its affinity mask, with SMT siblings (same
// package and core id) counted once. Falls back to the affinity count, then to 1.
int physical_cores();
} // namespace frugal
