# check_header.cmake - compile-only checks of frugal.h, run by ctest (test header_c99):
#   cmake -DC_COMPILER=... -DCXX_COMPILER=... -DSOURCE_DIR=<tests/capi> -DINCLUDE_SRC=<capi>
#         -DINCLUDE_GEN=<build/capi/include> -P check_header.cmake
# header_check.c (frugal.h and frugal_experimental.h) must compile as C89/C99/C11 and
# C++11/C++17/C++20 with -pedantic -Werror -Wall -Wextra;
# layout_test.c must compile as C99 (its negative-array fallback for _Static_assert).
set(common -fsyntax-only -pedantic -Werror -Wall -Wextra -I${INCLUDE_SRC} -I${INCLUDE_GEN})

function(check compiler lang std file)
    execute_process(COMMAND ${compiler} -x ${lang} -std=${std} ${common} ${ARGN} ${file}
        RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
    if(NOT rc EQUAL 0)
        message(FATAL_ERROR "frugal.h does not compile as ${std}: ${compiler} -std=${std}\n${out}")
    endif()
    message(STATUS "${std}: ok (${file})")
endfunction()

foreach(std c89 c99 c11)
    check(${C_COMPILER} c ${std} ${SOURCE_DIR}/header_check.c -Wstrict-prototypes)
endforeach()
foreach(std c++11 c++17 c++20)
    check(${CXX_COMPILER} c++ ${std} ${SOURCE_DIR}/header_check.c)
endforeach()
check(${C_COMPILER} c c99 ${SOURCE_DIR}/layout_test.c)
