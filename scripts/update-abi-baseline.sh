#!/usr/bin/env bash
# Rewrites cmake/abi/libfrugal.abi from a built libfrugal (default: build/release). Run it after a
# change to the C ABI that CHANGELOG.md records (docs/ABI.md); commit both together.
#   scripts/update-abi-baseline.sh [BUILD_DIR]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build/release}
abidw --exported-interfaces-only --headers-dir "$root/capi" --headers-dir "$build/capi/include" \
    --drop-private-types --no-corpus-path --no-comp-dir-path --type-id-style hash \
    --suppressions "$root/cmake/abi/suppressions.txt" --out-file "$root/cmake/abi/libfrugal.abi" \
    "$build/capi/libfrugal.so"
echo "wrote cmake/abi/libfrugal.abi from $build/capi/libfrugal.so"
