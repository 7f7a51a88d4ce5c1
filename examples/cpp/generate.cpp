// generate.cpp - stream a completion through the C++ wrapper (frugal.hpp over the C ABI).
//   generate-cpp MODEL.gguf [PROMPT] [N_TOKENS]
// Greedy decoding (temperature 0) so the output is reproducible: the same text as
// examples/c/generate.c. Built as C++17, the wrapper's minimum standard.
#include <cstdlib>
#include <exception>
#include <iostream>
#include <string>

#include "frugal.hpp"

int main(int argc, char ** argv) {
    namespace fr = frugal::api;
    if (argc < 2) {
        std::cerr << "usage: " << argv[0] << " MODEL.gguf [PROMPT] [N_TOKENS]\n";
        return 2;
    }
    const std::string prompt = argc > 2 ? argv[2] : "";
    const long n_predict = argc > 3 ? std::strtol(argv[3], nullptr, 10) : 64;
    if (!fr::version_matches()) std::cerr << "generate-cpp: header/library version mismatch\n";

    try {
        fr::session session;
        {
            const fr::model model = fr::model::load(argv[1]);
            session = fr::session(model);
            session.set_temperature(0.0f);
            if (prompt.empty())
                session.prompt_tokens({model.token_bos()}); // no prompt: start from BOS
            else
                session.prompt(prompt);
        } // the session keeps the weights alive

        std::cout << prompt << std::flush;
        for (const auto & token : session.tokens(n_predict > 0 ? size_t(n_predict) : 0))
            std::cout << token.text << std::flush;
        std::cout << '\n';
        if (session.done()) std::cerr << "generate-cpp: end of generation\n";
    } catch (const fr::error & e) {
        std::cout << std::flush;
        std::cerr << "\ngenerate-cpp: " << e.status_string() << ": " << e.what() << '\n';
        return 1;
    } catch (const std::exception & e) {
        std::cerr << "\ngenerate-cpp: " << e.what() << '\n';
        return 1;
    }
    return 0;
}
