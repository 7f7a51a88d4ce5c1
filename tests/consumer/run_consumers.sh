#!/usr/bin/env bash
# run_consumers.sh BUILD_DIR SOURCE_DIR SHARED_DIR - installs the build into a scratch prefix, then
# builds tests/consumer three ways (find_package of the installed package, add_subdirectory of the
# source tree, pkg-config with the plain compilers), each in C and C++, the first and last also
# against the installed static library, and checks that every binary prints stories260K's
# reference greedy continuation. Exit 77 without ../shared.
set -euo pipefail
build=$(cd "$1" && pwd) src=$(cd "$2" && pwd) shared=$3
model=$shared/data/stories260K/stories260K.gguf
ref=$shared/data/stories260K/reference.json
[[ -f $model && -f $ref ]] || { echo "SKIP: $model is not available"; exit 77; }
work=$build/consumers
rm -rf "$work"
mkdir -p "$work"
read_ref() { python3 -c "import json,sys; p=json.load(open(sys.argv[1]))['prompts'][0]; print(p[sys.argv[2]] if sys.argv[2]!='n' else len(p['generated_ids']), end='')" "$ref" "$1"; }
prompt=$(read_ref prompt)
want=$(read_ref generated_text)
n=$(read_ref n)
failures=0
check() { # check WHAT BINARY
    local got
    got=$("$2" "$model" "$prompt" "$n" 2>"$work/stderr") || { echo "FAIL $1: exit $? $(cat "$work/stderr")"; failures=$((failures + 1)); return; }
    if [[ $got == "$want" ]]; then echo "ok   $1"; else echo "FAIL $1: printed '$got'"; failures=$((failures + 1)); fi
}
check_static() { # as check, and the binary must not load libfrugal.so
    if readelf -d "$2" | grep -q 'NEEDED.*libfrugal'; then
        echo "FAIL $1: linked to libfrugal.so"
        failures=$((failures + 1))
    else
        check "$@"
    fi
}
gen=(-G Ninja -DCMAKE_BUILD_TYPE=Release)
command -v ccache >/dev/null && gen+=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)

# 1. find_package(frugal CONFIG) of an installed tree
cmake --install "$build" --prefix "$work/prefix" >/dev/null
cmake -S "$src/tests/consumer" -B "$work/find_package" "${gen[@]}" -DFRUGAL_CONSUME=find_package \
    -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
cmake --build "$work/find_package" >/dev/null
check "find_package, C" "$work/find_package/consumer_c"
check "find_package, C++" "$work/find_package/consumer_cxx"

# 1b. the static library from the same package: find_package(frugal CONFIG COMPONENTS static)
cmake -S "$src/tests/consumer" -B "$work/find_package_static" "${gen[@]}" -DFRUGAL_CONSUME=find_package_static \
    -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
cmake --build "$work/find_package_static" >/dev/null
check_static "find_package COMPONENTS static, C" "$work/find_package_static/consumer_c"
check_static "find_package COMPONENTS static, C++" "$work/find_package_static/consumer_cxx"

# 2. add_subdirectory of the source tree (what FetchContent with SOURCE_DIR does). Built beside the
# main build dirs (build/<name>) so ccache's relative paths match theirs and the compile is cached.
sub=$src/build/consumer-subdirectory
cmake -S "$src/tests/consumer" -B "$sub" "${gen[@]}" -DFRUGAL_CONSUME=subdirectory -DFRUGAL_SOURCE_DIR="$src" \
    -DFRUGAL_WERROR=ON >/dev/null
cmake --build "$sub" -j "${FRUGAL_JOBS:-2}" >/dev/null
check "add_subdirectory, C" "$sub/consumer_c"
check "add_subdirectory, C++" "$sub/consumer_cxx"

# 3. pkg-config, no CMake
pc=$(find "$work/prefix" -name frugal.pc | head -n 1)
export PKG_CONFIG_PATH=${pc%/*}
libdir=$(pkg-config --variable=libdir frugal)
cc -std=c99 -o "$work/pc_c" "$src/tests/consumer/main.c" $(pkg-config --cflags --libs frugal) -Wl,-rpath,"$libdir"
c++ -std=c++17 -o "$work/pc_cxx" "$src/tests/consumer/main.cpp" $(pkg-config --cflags --libs frugal) -Wl,-rpath,"$libdir"
check "pkg-config, C" "$work/pc_c"
check "pkg-config, C++" "$work/pc_cxx"
cc -std=c99 -o "$work/pcs_c" "$src/tests/consumer/main.c" $(pkg-config --cflags --libs frugal-static)
c++ -std=c++17 -o "$work/pcs_cxx" "$src/tests/consumer/main.cpp" $(pkg-config --cflags --libs frugal-static)
check_static "pkg-config frugal-static, C" "$work/pcs_c"
check_static "pkg-config frugal-static, C++" "$work/pcs_cxx"

((failures == 0)) && echo "all 10 consumers print the reference continuation"
exit $((failures > 0))
