#!/bin/sh
# abi_break_test.sh CC CAPI_DIR GENERATED_INCLUDE_DIR SOURCE_DIR - shows that the ABI gates catch a
# deliberate break: in a scratch copy of frugal.h two fields of frugal_model_options trade places.
#   1. layout_test.c no longer compiles against the copy (its offsetof pins fail);
#   2. cmake/abi/check_abi.sh rejects a library built against the copy (abidiff: incompatible),
#      rejects an added function missing from the changelog, and accepts it once recorded, and
#      accepts the break only with a new SONAME named in the changelog.
# Exit 77 when abidiff / abidw are not installed.
set -u
cc=$1 capi=$2 gen=$3 src=$4
check_abi=$src/cmake/abi/check_abi.sh
command -v abidw >/dev/null 2>&1 || { echo "SKIP: abidw not found (apt install abigail-tools)"; exit 77; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0
expect() { # expect ok|fail "what" command...
    want=$1 what=$2
    shift 2
    if "$@" >"$work/out" 2>&1; then got=ok; else got=fail; fi
    if [ "$got" = "$want" ]; then
        echo "ok   $what"
    else
        echo "FAIL $what (expected $want, got $got)"
        sed 's/^/     /' "$work/out"
        failures=$((failures + 1))
    fi
}

mkdir -p "$work/broken"
awk '/int32_t n_threads;/ { held = $0; next }
     /int32_t use_mmap;/ { print; print held; next } { print }' "$capi/frugal.h" >"$work/broken/frugal.h"
cmp -s "$capi/frugal.h" "$work/broken/frugal.h" && { echo "FAIL the scratch copy is unchanged"; exit 1; }

expect ok "layout_test.c compiles against frugal.h" \
    "$cc" -std=c11 -fsyntax-only -I"$capi" -I"$gen" "$src/tests/capi/layout_test.c"
expect fail "layout_test.c fails against the copy with swapped fields" \
    "$cc" -std=c11 -fsyntax-only -I"$work/broken" -I"$gen" "$src/tests/capi/layout_test.c"

probe() { # probe OUT SONAME INCLUDE_DIR [flags]
    out=$1 soname=$2 inc=$3
    shift 3
    "$cc" -g -shared -fPIC -fvisibility=hidden -I"$inc" -I"$gen" -Wl,-soname,"$soname" "$@" \
        -o "$work/$out" "$src/tests/capi/abi_probe.c"
}
probe good.so libprobe.so.1 "$capi"
probe broken.so libprobe.so.1 "$work/broken"
probe extra.so libprobe.so.1 "$capi" -DPROBE_EXTRA
probe bumped.so libprobe.so.2 "$work/broken"
abidw --exported-interfaces-only --headers-dir "$capi" --drop-private-types --no-corpus-path --no-comp-dir-path \
    --type-id-style hash --out-file "$work/baseline.abi" "$work/good.so"
printf '# Changelog\n' >"$work/CHANGELOG.md"
gate() { "$check_abi" "$work/$1" "$2" "$work/baseline.abi" "$src/cmake/abi/suppressions.txt" "$work/CHANGELOG.md"; }

expect ok "check_abi accepts the library it was taken from" gate good.so "$capi"
expect fail "check_abi rejects the library built with swapped fields" gate broken.so "$work/broken"
expect fail "check_abi rejects a new function the changelog does not name" gate extra.so "$capi"
printf -- '- added frugal_probe_extra\n' >>"$work/CHANGELOG.md"
expect ok "check_abi accepts it once the changelog names it" gate extra.so "$capi"
expect fail "check_abi rejects the break with a new SONAME the changelog does not name" gate bumped.so "$work/broken"
printf -- '- libprobe.so.2: frugal_model_options reordered\n' >>"$work/CHANGELOG.md"
expect ok "check_abi accepts the break with a new SONAME named in the changelog" gate bumped.so "$work/broken"

[ $failures -eq 0 ] && echo "all ABI gate checks passed"
exit $((failures > 0))
