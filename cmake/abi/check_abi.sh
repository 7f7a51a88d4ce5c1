#!/bin/sh
# check_abi.sh LIBRARY HEADERS_DIR BASELINE SUPPRESSIONS CHANGELOG - the ABI gate (docs/ABI.md).
# Compares LIBRARY with the committed BASELINE (abidw XML) using abidiff, looking only at the
# interfaces declared in HEADERS_DIR and ignoring what SUPPRESSIONS lists (the experimental API,
# the opaque handles). Fails when:
#   - anything but a pure addition changed (a function removed or its signature changed, a public
#     struct changed), unless the SONAME changed too (a deliberate break) and CHANGELOG names it;
#   - a compatible change (a new function) is not recorded in CHANGELOG (its name must appear).
# After a recorded change, refresh the baseline with scripts/update-abi-baseline.sh.
# Exit 77 (skipped) when abidiff is not installed (Debian: abigail-tools).
set -u
lib=$1 headers=$2 baseline=$3 suppressions=$4 changelog=$5
command -v abidiff >/dev/null 2>&1 || { echo "SKIP: abidiff not found (apt install abigail-tools)"; exit 77; }

report=$(abidiff --suppressions "$suppressions" --headers-dir2 "$headers" --no-unreferenced-symbols \
    "$baseline" "$lib" 2>&1)
rc=$?
[ -n "$report" ] && printf '%s\n' "$report"
if [ $((rc & 3)) -ne 0 ]; then
    echo "abi: abidiff failed to run (exit $rc)"
    exit 1
fi

soname_of_baseline=$(sed -n "s/.*<abi-corpus [^>]*soname='\([^']*\)'.*/\1/p" "$baseline" | head -n 1)
soname_of_lib=$(readelf -d "$lib" 2>/dev/null | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')

# abidiff flags only removals as incompatible (8); a changed signature or a public struct changed
# underneath a function is "an ABI change" (4) for it to review. Here any change that is not a
# pure addition counts as a break.
changed=$(printf '%s\n' "$report" | sed -n 's/.*changes summary: \([0-9]*\) Removed[^,]*, \([0-9]*\) Changed.*/\1 \2/p' |
    awk '{ n += $1 + $2 } END { print n + 0 }')
if [ $((rc & 8)) -ne 0 ] || [ "$changed" -gt 0 ]; then
    if [ "$soname_of_lib" != "$soname_of_baseline" ] && grep -qF "$soname_of_lib" "$changelog"; then
        echo "abi: incompatible change with a new SONAME ($soname_of_baseline -> $soname_of_lib), recorded in $changelog"
        exit 0
    fi
    echo "abi: INCOMPATIBLE change to the C ABI of $lib (SONAME $soname_of_lib, baseline $soname_of_baseline)."
    echo "abi: keep the old signature and add a _v2 function instead, or bump the SONAME and say so in $changelog."
    exit 1
fi
if [ $((rc & 4)) -ne 0 ]; then
    # "  [A] 'function frugal_status frugal_foo(...)'  {frugal_foo}" -> frugal_foo
    added=$(printf '%s\n' "$report" | sed -n "s/^ *\[A\] .*{\([A-Za-z0-9_]*\)}.*/\1/p" | sort -u)
    missing=""
    for f in $added; do
        grep -qw "$f" "$changelog" || missing="$missing $f"
    done
    if [ -n "$missing" ]; then
        echo "abi: new functions not recorded in $changelog:$missing"
        exit 1
    fi
    echo "abi: compatible additions, all recorded in $changelog:" $added
    exit 0
fi
echo "abi: no change against $(basename "$baseline") (SONAME $soname_of_lib)"
exit 0
