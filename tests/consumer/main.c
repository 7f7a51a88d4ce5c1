/* main.c - a C consumer of the installed library: consumer_c MODEL PROMPT N prints the greedy
   continuation of PROMPT (N tokens at most) on stdout, errors on stderr with exit code 1. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <frugal.h>

int main(int argc, char ** argv) {
    frugal_model * model = NULL;
    frugal_session * session = NULL;
    frugal_error * err = NULL;
    frugal_status st;
    char piece[256];
    size_t len = 0;
    int32_t token = 0;
    int i, n;
    if (argc != 4) {
        fprintf(stderr, "usage: consumer_c MODEL PROMPT N\n");
        return 2;
    }
    n = atoi(argv[3]);
    if (frugal_version_number() != FRUGAL_VERSION_NUMBER) {
        fprintf(stderr, "header %d and library %u disagree\n", (int)FRUGAL_VERSION_NUMBER, (unsigned)frugal_version_number());
        return 1;
    }
    st = frugal_model_load(argv[1], NULL, &model, &err);
    if (st == FRUGAL_OK) st = frugal_session_create(model, 0, &session, &err);
    if (st == FRUGAL_OK) st = frugal_session_set_param_f32(session, FRUGAL_PARAM_TEMPERATURE, 0.0f, &err);
    if (st == FRUGAL_OK) st = frugal_session_prompt(session, argv[2], strlen(argv[2]), &err);
    for (i = 0; st == FRUGAL_OK && i < n; ++i) {
        st = frugal_session_next(session, &token, piece, sizeof piece, &len, &err);
        if (st >= 0) fwrite(piece, 1, len, stdout);
    }
    if (st < 0) fprintf(stderr, "consumer_c: %s\n", frugal_error_message(err));
    frugal_error_free(err);
    frugal_session_free(session);
    frugal_model_free(model);
    return st < 0 ? 1 : 0;
}
