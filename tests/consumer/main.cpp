// main.cpp - the C++ consumer: the same program as main.c through the C ABI from C++17, checking
// that frugal.h is usable from C++ and that frugal::frugal carries what a C++ program needs.
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>

#include <frugal.h>

int main(int argc, char ** argv) {
    if (argc != 4) {
        std::fprintf(stderr, "usage: consumer_cxx MODEL PROMPT N\n");
        return 2;
    }
    frugal_error * err = nullptr;
    auto fail = [&] {
        std::fprintf(stderr, "consumer_cxx: %s\n", frugal_error_message(err));
        frugal_error_free(err);
        return 1;
    };
    frugal_model * raw_model = nullptr;
    if (frugal_model_load(argv[1], nullptr, &raw_model, &err) != FRUGAL_OK) return fail();
    std::unique_ptr<frugal_model, decltype(&frugal_model_free)> model(raw_model, frugal_model_free);
    frugal_session * raw_session = nullptr;
    if (frugal_session_create(model.get(), 0, &raw_session, &err) != FRUGAL_OK) return fail();
    std::unique_ptr<frugal_session, decltype(&frugal_session_free)> session(raw_session, frugal_session_free);
    if (frugal_session_set_param_f32(session.get(), FRUGAL_PARAM_TEMPERATURE, 0.0f, &err) != FRUGAL_OK ||
        frugal_session_prompt(session.get(), argv[2], std::strlen(argv[2]), &err) != FRUGAL_OK)
        return fail();
    std::string text, piece(256, '\0');
    for (int i = 0, n = std::stoi(argv[3]); i < n; ++i) {
        size_t len = 0;
        const frugal_status st = frugal_session_next(session.get(), nullptr, piece.data(), piece.size(), &len, &err);
        if (st < 0) return fail();
        text.append(piece, 0, len);
        if (st == FRUGAL_DONE) break;
    }
    std::fwrite(text.data(), 1, text.size(), stdout);
    return 0;
}
