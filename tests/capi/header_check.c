/* header_check.c - compiled (never run) by check_header.cmake as C89, C99 and C11 and as C++11,
   C++17 and C++20, each with -pedantic -Werror -Wall -Wextra: frugal.h must be clean in all of them. Uses
   the macros, callback typedefs and an options struct so that they are really instantiated. */
#include "frugal.h"
#include "frugal.h" /* the include guard works */
#include "frugal_experimental.h"

static int32_t on_progress(float fraction, void * user_data) {
    (void)user_data;
    return fraction > 1.0f ? 1 : 0;
}

static void on_log(int32_t level, const char * message, void * user_data) {
    (void)level;
    (void)message;
    (void)user_data;
}

int main(void) {
    frugal_model_options opts;
    frugal_progress_fn progress = on_progress;
    frugal_log_fn log_fn = on_log;
    frugal_status st = FRUGAL_MODEL_OPTIONS_INIT(&opts);
    frugal_param key = FRUGAL_PARAM_TEMPERATURE;
    frugal_chat_message message = {"user", "hi", 2};
    int32_t form = FRUGALX_MLA_ABSORBED;
    int32_t kind = FRUGAL_TEXT_REASONING;
    opts.progress = progress;
    frugal_set_log_callback(log_fn, 0, FRUGAL_LOG_LEVEL_WARN);
    (void)key;
    (void)message;
    (void)form;
    (void)kind;
    return st == FRUGAL_OK && FRUGAL_VERSION_NUMBER > 0 ? 0 : 1;
}
