# frugal_warnings(target): the project's warning set; errors only when FRUGAL_WERROR (CI).
function(frugal_warnings target)
    target_compile_options(${target} PRIVATE
        $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wshadow -Wnon-virtual-dtor -Wcast-align -Wnull-dereference>
        $<$<COMPILE_LANGUAGE:C>:-Wall -Wextra>
        $<$<BOOL:${FRUGAL_WERROR}>:-Werror>)
endfunction()
