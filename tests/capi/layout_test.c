/* layout_test.c - pins the C ABI (ONNX Runtime's trick): every enum value of frugal.h and, on
   x86-64, the size and field offsets of every public struct (frugal_model_options,
   frugal_session_options, frugal_chat_message). A change that would break callers
   compiled against an older header stops the build here. Built as C11 (_Static_assert);
   check_header.cmake also compiles it as C99, where PIN falls back to a negative array size. */
#include <stddef.h>
#include <stdio.h>

#include "frugal.h"

#if defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L
#  define PIN(cond, msg) _Static_assert(cond, msg)
#else
#  define PIN_CAT2(a, b) a##b
#  define PIN_CAT(a, b) PIN_CAT2(a, b)
#  define PIN(cond, msg) typedef char PIN_CAT(pin_failed_line_, __LINE__)[(cond) ? 1 : -1]
#endif

/* status codes: append only, never renumber */
PIN(FRUGAL_OK == 0, "FRUGAL_OK");
PIN(FRUGAL_DONE == 1, "FRUGAL_DONE");
PIN(FRUGAL_ERR_INVALID_ARGUMENT == -1, "FRUGAL_ERR_INVALID_ARGUMENT");
PIN(FRUGAL_ERR_OUT_OF_MEMORY == -2, "FRUGAL_ERR_OUT_OF_MEMORY");
PIN(FRUGAL_ERR_IO == -3, "FRUGAL_ERR_IO");
PIN(FRUGAL_ERR_UNSUPPORTED_MODEL == -4, "FRUGAL_ERR_UNSUPPORTED_MODEL");
PIN(FRUGAL_ERR_CONTEXT_FULL == -5, "FRUGAL_ERR_CONTEXT_FULL");
PIN(FRUGAL_ERR_CANCELLED == -6, "FRUGAL_ERR_CANCELLED");
PIN(FRUGAL_ERR_BUFFER_TOO_SMALL == -7, "FRUGAL_ERR_BUFFER_TOO_SMALL");
PIN(FRUGAL_ERR_STRUCT_SIZE == -8, "FRUGAL_ERR_STRUCT_SIZE");
PIN(FRUGAL_ERR_INVALID_MODEL == -9, "FRUGAL_ERR_INVALID_MODEL");
PIN(FRUGAL_ERR_INTERNAL == -100, "FRUGAL_ERR_INTERNAL");

/* log levels */
PIN(FRUGAL_LOG_LEVEL_DEBUG == 0, "FRUGAL_LOG_LEVEL_DEBUG");
PIN(FRUGAL_LOG_LEVEL_INFO == 1, "FRUGAL_LOG_LEVEL_INFO");
PIN(FRUGAL_LOG_LEVEL_WARN == 2, "FRUGAL_LOG_LEVEL_WARN");
PIN(FRUGAL_LOG_LEVEL_ERROR == 3, "FRUGAL_LOG_LEVEL_ERROR");

/* session parameters */
PIN(FRUGAL_PARAM_TEMPERATURE == 1, "FRUGAL_PARAM_TEMPERATURE");
PIN(FRUGAL_PARAM_TOP_K == 2, "FRUGAL_PARAM_TOP_K");
PIN(FRUGAL_PARAM_TOP_P == 3, "FRUGAL_PARAM_TOP_P");
PIN(FRUGAL_PARAM_SEED == 4, "FRUGAL_PARAM_SEED");
PIN(FRUGAL_PARAM_MIN_P == 5, "FRUGAL_PARAM_MIN_P");
PIN(FRUGAL_PARAM_REPEAT_PENALTY == 6, "FRUGAL_PARAM_REPEAT_PENALTY");
PIN(FRUGAL_PARAM_REPEAT_LAST_N == 7, "FRUGAL_PARAM_REPEAT_LAST_N");
PIN(FRUGAL_PARAM_N_THREADS == 8, "FRUGAL_PARAM_N_THREADS");

/* KV cache types (frugal_session_options.kv_type): GGUF's tensor type ids */
PIN(FRUGAL_KV_F32 == 0, "FRUGAL_KV_F32");
PIN(FRUGAL_KV_F16 == 1, "FRUGAL_KV_F16");
PIN(FRUGAL_KV_Q8_0 == 8, "FRUGAL_KV_Q8_0");

/* generated text kinds (frugal_session_next_part) */
PIN(FRUGAL_TEXT_CONTENT == 0, "FRUGAL_TEXT_CONTENT");
PIN(FRUGAL_TEXT_REASONING == 1, "FRUGAL_TEXT_REASONING");

/* typedefs crossing the boundary are fixed-width */
PIN(sizeof(frugal_status) == 4, "frugal_status is int32_t");
PIN(sizeof(frugal_param) == 4, "frugal_param is int32_t");

/* frugal_model_options on x86-64 (LP64): 4 x 32-bit fields, 2 pointers, 2 x 32-bit fields */
#if defined(__x86_64__) && defined(__LP64__)
PIN(sizeof(frugal_model_options) == 40, "sizeof(frugal_model_options)");
PIN(offsetof(frugal_model_options, struct_size) == 0, "offsetof struct_size");
PIN(offsetof(frugal_model_options, n_threads) == 4, "offsetof n_threads");
PIN(offsetof(frugal_model_options, use_mmap) == 8, "offsetof use_mmap");
PIN(offsetof(frugal_model_options, reserved0) == 12, "offsetof reserved0");
PIN(offsetof(frugal_model_options, progress) == 16, "offsetof progress");
PIN(offsetof(frugal_model_options, progress_user_data) == 24, "offsetof progress_user_data");
PIN(offsetof(frugal_model_options, repack_weights) == 32, "offsetof repack_weights");
PIN(offsetof(frugal_model_options, reserved1) == 36, "offsetof reserved1");
#endif
/* on every platform: struct_size first, the pointers 8-byte aligned by reserved0 */
PIN(offsetof(frugal_model_options, struct_size) == 0, "struct_size comes first");
PIN(offsetof(frugal_model_options, progress) == 16, "reserved0 keeps the pointers at offset 16");

/* frugal_session_options: 4 x 32-bit fields on every platform */
PIN(sizeof(frugal_session_options) == 16, "sizeof(frugal_session_options)");
PIN(offsetof(frugal_session_options, struct_size) == 0, "struct_size comes first");
PIN(offsetof(frugal_session_options, n_ctx) == 4, "offsetof n_ctx");
PIN(offsetof(frugal_session_options, kv_type) == 8, "offsetof kv_type");
PIN(offsetof(frugal_session_options, reserved0) == 12, "offsetof reserved0");

/* frugal_chat_message: role, content, content_len */
#if defined(__x86_64__) && defined(__LP64__)
PIN(sizeof(frugal_chat_message) == 24, "sizeof(frugal_chat_message)");
PIN(offsetof(frugal_chat_message, role) == 0, "offsetof role");
PIN(offsetof(frugal_chat_message, content) == 8, "offsetof content");
PIN(offsetof(frugal_chat_message, content_len) == 16, "offsetof content_len");
#endif
PIN(offsetof(frugal_chat_message, role) == 0, "role comes first");

int main(void) {
    frugal_model_options o;
    /* The same header at run time: a C program links libfrugal and agrees on the version and size. */
    if (frugal_version_number() != FRUGAL_VERSION_NUMBER) {
        fprintf(stderr, "layout: header %d, library %u\n", (int)FRUGAL_VERSION_NUMBER, (unsigned)frugal_version_number());
        return 1;
    }
    if (FRUGAL_MODEL_OPTIONS_INIT(&o) != FRUGAL_OK || o.struct_size != sizeof o) {
        fprintf(stderr, "layout: frugal_model_options_init did not record sizeof\n");
        return 1;
    }
    printf("layout: frugal_model_options is %u bytes; enums pinned\n", (unsigned)sizeof o);
    return 0;
}
