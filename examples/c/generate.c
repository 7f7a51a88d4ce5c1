/* generate.c - stream a completion through the C ABI.
 *   generate-c MODEL.gguf [PROMPT] [N_TOKENS]
 * Greedy decoding (temperature 0) so the output is reproducible. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frugal.h"

static int report(const char * what, frugal_status st, frugal_error * err) {
    fprintf(stderr, "generate-c: %s failed: %s (%s)\n", what, frugal_status_string(st), frugal_error_message(err));
    frugal_error_free(err);
    return 1;
}

int main(int argc, char ** argv) {
    frugal_model_options opts;
    frugal_model * model = NULL;
    frugal_session * session = NULL;
    frugal_error * err = NULL;
    frugal_status st;
    const char * prompt = argc > 2 ? argv[2] : "";
    int n_predict = argc > 3 ? atoi(argv[3]) : 64;
    int i, rc = 0;
    int32_t bos;
    char piece[256];

    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL.gguf [PROMPT] [N_TOKENS]\n", argv[0]);
        return 2;
    }
    if (frugal_version_number() != FRUGAL_VERSION_NUMBER) fprintf(stderr, "generate-c: header/library version mismatch\n");

    FRUGAL_MODEL_OPTIONS_INIT(&opts);
    st = frugal_model_load(argv[1], &opts, &model, &err);
    if (st != FRUGAL_OK) return report("frugal_model_load", st, err);
    st = frugal_session_create(model, 0, &session, &err);
    if (st != FRUGAL_OK) {
        frugal_model_free(model);
        return report("frugal_session_create", st, err);
    }
    bos = frugal_model_token_bos(model);
    frugal_model_free(model); /* the session keeps the weights alive */
    model = NULL;

    frugal_session_set_param_f32(session, FRUGAL_PARAM_TEMPERATURE, 0.0f, NULL);
    if (prompt[0] != '\0') {
        st = frugal_session_prompt(session, prompt, strlen(prompt), &err);
    } else {
        /* no prompt: start from BOS */
        st = frugal_session_prompt_tokens(session, &bos, 1, &err);
    }
    if (st != FRUGAL_OK) {
        rc = report("frugal_session_prompt", st, err);
        goto done;
    }
    fputs(prompt, stdout);
    for (i = 0; i < n_predict; ++i) {
        int32_t token;
        size_t len = 0;
        st = frugal_session_next(session, &token, piece, sizeof piece, &len, &err);
        if (st < 0) {
            rc = report("frugal_session_next", st, err);
            goto done;
        }
        fwrite(piece, 1, len, stdout);
        fflush(stdout);
        if (st == FRUGAL_DONE) break;
    }
    fputc('\n', stdout);
done:
    frugal_session_free(session);
    return rc;
}
