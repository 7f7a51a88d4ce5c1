#!/bin/sh
# symbols.sh LIBFRUGAL_SO FRUGAL_H - the shared library exports only frugal_* / frugalx_* symbols
# (static fmt/oneDNN/C++ runtime symbols must stay local), and every function frugal.h declares.
# Exit 77 (skipped) when nm is not installed.
set -u
lib=$1
header=$2
command -v nm >/dev/null 2>&1 || { echo "SKIP: nm not found"; exit 77; }

syms=$(nm -D --defined-only "$lib") || { echo "symbols: nm failed on $lib"; exit 1; }
# "ADDRESS TYPE NAME[@VERSION]" -> NAME
names=$(printf '%s\n' "$syms" | awk 'NF >= 3 { print $3 }' | sed 's/@.*//' | sort -u)
[ -n "$names" ] || { echo "symbols: $lib exports nothing"; exit 1; }

# Linker-provided symbols some toolchains leave in the dynamic table.
linker='^(_init|_fini|__bss_start|__bss_start__|_bss_end__|__end__|_edata|_end|__data_start|_IO_stdin_used)$'
offenders=$(printf '%s\n' "$names" | grep -Ev '^frugalx?_' | grep -Ev "$linker")

declared=$(grep '^FRUGAL_API' "$header" | grep -o 'frugal_[a-z0-9_]*(' | tr -d '(' | sort -u)
missing=""
for f in $declared; do
    printf '%s\n' "$names" | grep -qx "$f" || missing="$missing $f"
done

status=0
if [ -n "$offenders" ]; then
    echo "symbols: $lib exports symbols outside frugal_/frugalx_:"
    printf '  %s\n' $offenders
    status=1
fi
if [ -n "$missing" ]; then
    echo "symbols: functions declared in frugal.h but not exported:"
    printf '  %s\n' $missing
    status=1
fi
[ $status -eq 0 ] && echo "symbols: $(printf '%s\n' "$names" | wc -l) exported, all frugal_*; $(printf '%s\n' $declared | wc -l) declared functions present"
exit $status
