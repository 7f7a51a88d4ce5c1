// main.cpp - the C++ consumer: the same program as main.c through the installed C++ wrapper
// (frugal.hpp, header-only over the C ABI), built as C++17: consumer_cxx MODEL PROMPT N.
#include <cstdio>
#include <string>

#include <frugal.hpp>

int main(int argc, char ** argv) {
    namespace fr = frugal::api;
    if (argc != 4) {
        std::fprintf(stderr, "usage: consumer_cxx MODEL PROMPT N\n");
        return 2;
    }
    try {
        const fr::model model = fr::model::load(argv[1]);
        fr::session session(model);
        session.set_temperature(0.0f);
        session.prompt(argv[2]);
        std::string text;
        for (const auto & token : session.tokens(size_t(std::stoi(argv[3])))) text += token.text;
        std::fwrite(text.data(), 1, text.size(), stdout);
    } catch (const fr::error & e) {
        std::fprintf(stderr, "consumer_cxx: %s\n", e.what());
        return 1;
    }
    return 0;
}
