/* Proves the packaged C ABI links and runs: prints the library version. */
#include <stdio.h>

#include "frugal.h"

int main(void) {
    printf("frugal %s (%u)\n", frugal_version_string(), frugal_version_number());
    return frugal_version_number() == FRUGAL_VERSION_NUMBER ? 0 : 1;
}
