// tokenizer_hf.cpp - vocab::from_hf: a Hugging Face byte-level BPE tokenizer (tokenizer.json, with
// tokenizer_config.json and config.json when present) read into the same vocab a GGUF file of that
// tokenizer holds, following llama.cpp's converter (convert_hf_to_gguf.py, get_vocab_base).
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "runtime/tokenizer.hpp"
#include "runtime/tokenizer_internal.hpp"
#include "util/error.hpp"

namespace frugal {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

// Ids are dense in real vocabularies (the largest have ~260k); a bound keeps a corrupt id from
// asking for gigabytes.
constexpr int64_t k_max_vocab = int64_t(1) << 24;

json read_json(const fs::path & path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw_error(status::io, "tokenizer: cannot open {}", path.string());
    std::stringstream text;
    text << in.rdbuf();
    if (!in && !in.eof()) throw_error(status::io, "tokenizer: cannot read {}", path.string());
    try {
        return json::parse(text.str());
    } catch (const json::exception & e) {
        throw_error(status::invalid_model, "tokenizer: {} is not valid JSON: {}", path.string(), e.what());
    }
}

// Reads the fields of one JSON file, naming the file and the field in every error.
class json_reader {
public:
    explicit json_reader(const fs::path & path) : file_(path.filename().string()) {}

    const json & at(const json & obj, std::string_view key, std::string_view where) const {
        if (!obj.is_object() || !obj.contains(key))
            throw_error(status::invalid_model, "tokenizer: {}: {} has no field '{}'", file_, where, key);
        return obj[std::string(key)];
    }
    std::string string(const json & v, std::string_view where) const {
        if (!v.is_string())
            throw_error(status::invalid_model, "tokenizer: {}: {} is {}, not a string", file_, where,
                        v.dump(-1, ' ', true).substr(0, 80));
        return v.get<std::string>();
    }
    int64_t integer(const json & v, std::string_view where) const {
        if (!v.is_number_integer())
            throw_error(status::invalid_model, "tokenizer: {}: {} is {}, not an integer", file_, where,
                        v.dump(-1, ' ', true).substr(0, 80));
        return v.get<int64_t>();
    }
    // A token given as "text" or as an AddedToken object {"content": "text", ...}; null = none.
    std::optional<std::string> token_text(const json & obj, std::string_view key) const {
        if (!obj.contains(key) || obj[std::string(key)].is_null()) return std::nullopt;
        const json & v = obj[std::string(key)];
        return string(v.is_object() ? at(v, "content", key) : v, key);
    }
    [[noreturn]] void unsupported(std::string_view what, const json & v) const {
        throw_error(status::unsupported_model, "tokenizer: {}: {} {} is not supported (byte-level BPE only)", file_,
                    what, v.dump(-1, ' ', true).substr(0, 200));
    }

private:
    std::string file_;
};

// llama.cpp's converter types an added token control when it is special or looks special.
bool looks_special(std::string_view t) {
    auto framed = [&](std::string_view open, std::string_view close) {
        return t.size() >= open.size() + close.size() && t.starts_with(open) && t.ends_with(close);
    };
    return t == "<pad>" || t == "<mask>" || t == "<2mass>" || t == "[@BOS@]" || framed("<|", "|>") ||
           framed("<\xEF\xBD\x9C", "\xEF\xBD\x9C>") || framed("<unused", ">");
}

// The pre-tokenizer's regexes in order; `byte_level` tells whether a ByteLevel step was seen.
void collect_regexes(const json_reader & r, const json & pre, std::vector<std::string> & regexes, bool & byte_level) {
    const std::string type = r.string(r.at(pre, "type", "pre_tokenizer"), "pre_tokenizer.type");
    if (type == "Sequence") {
        for (const json & p : r.at(pre, "pretokenizers", "pre_tokenizer")) collect_regexes(r, p, regexes, byte_level);
    } else if (type == "Split") {
        const json & pattern = r.at(pre, "pattern", "Split");
        if (!pattern.contains("Regex") || pre.value("behavior", "") != "Isolated" || pre.value("invert", false))
            r.unsupported("pre-tokenizer", pre);
        regexes.push_back(r.string(pattern["Regex"], "Split.pattern.Regex"));
    } else if (type == "ByteLevel") {
        byte_level = true;
        if (pre.value("add_prefix_space", false)) r.unsupported("pre-tokenizer", pre);
        if (pre.value("use_regex", true)) regexes.emplace_back(detail::k_gpt2_regex);
    } else {
        r.unsupported("pre-tokenizer", pre);
    }
}

// true for an NFC normalizer, false for none; anything else is not supported.
bool read_normalizer(const json_reader & r, const json & norm) {
    if (norm.is_null()) return false;
    const std::string type = r.string(r.at(norm, "type", "normalizer"), "normalizer.type");
    if (type == "NFC") return true;
    if (type == "Sequence") {
        bool nfc = false;
        for (const json & n : r.at(norm, "normalizers", "normalizer")) nfc = read_normalizer(r, n) || nfc;
        return nfc;
    }
    r.unsupported("normalizer", norm);
}

// The special token a TemplateProcessing post-processor puts before a single sequence, if any.
std::optional<std::string> leading_special(const json & post) {
    if (!post.is_object()) return std::nullopt;
    if (post.value("type", "") == "Sequence" && post.contains("processors")) {
        for (const json & p : post["processors"])
            if (auto t = leading_special(p)) return t;
        return std::nullopt;
    }
    if (post.value("type", "") != "TemplateProcessing" || !post.contains("single")) return std::nullopt;
    const json & single = post["single"];
    if (!single.is_array() || single.empty() || !single[0].contains("SpecialToken")) return std::nullopt;
    const json & id = single[0]["SpecialToken"]["id"];
    return id.is_string() ? std::optional(id.get<std::string>()) : std::nullopt;
}

vocab read_hf(const fs::path & path);

} // namespace

vocab vocab::from_hf(const fs::path & path) {
    try {
        return read_hf(path);
    } catch (const json::exception & e) { // a field of an unexpected type the checks above do not name
        throw_error(status::invalid_model, "tokenizer: {}: unexpected JSON structure: {}", path.string(), e.what());
    }
}

namespace {

vocab read_hf(const fs::path & path) {
    std::error_code ec;
    const bool is_dir = fs::is_directory(path, ec);
    const fs::path dir = is_dir ? path : path.parent_path();
    const fs::path tokenizer_json = is_dir ? path / "tokenizer.json" : path;
    const json root = read_json(tokenizer_json);
    const json_reader r(tokenizer_json);

    const json & model = r.at(root, "model", "the file");
    const std::string type = model.value("type", "");
    if (type != "BPE" || model.value("byte_fallback", false)) r.unsupported("model", json{{"type", type}});
    std::vector<std::string> regexes;
    bool byte_level = false;
    if (root.contains("pre_tokenizer") && !root["pre_tokenizer"].is_null())
        collect_regexes(r, root["pre_tokenizer"], regexes, byte_level);
    if (!byte_level) r.unsupported("pre-tokenizer without ByteLevel", root.value("pre_tokenizer", json()));

    vocab v;
    v.model = "gpt2";
    const auto pre = detail::bpe_pre_name(regexes, model.value("ignore_merges", false));
    if (!pre) {
        std::string list;
        for (const auto & re : regexes) list += fmt::format("{}'{}'", list.empty() ? "" : ", ", re);
        throw_error(status::unsupported_model,
                    "tokenizer: {}: no known pre-tokenizer splits with [{}] (ignore_merges {})",
                    tokenizer_json.string(), list, model.value("ignore_merges", false));
    }
    v.pre = *pre;
    v.normalize_nfc = read_normalizer(r, root.value("normalizer", json()));
    v.add_space_prefix = false;

    // id -> text: the model's vocab, then added tokens (which win, as in tokenizer.get_vocab())
    std::vector<std::optional<std::string>> texts;
    auto place = [&](int64_t id, std::string text, std::string_view where) {
        if (id < 0 || id >= k_max_vocab)
            throw_error(status::invalid_model, "tokenizer: {}: {} id {} is out of range [0, {})",
                        tokenizer_json.string(), where, id, k_max_vocab);
        if (size_t(id) >= texts.size()) texts.resize(size_t(id) + 1);
        texts[size_t(id)] = std::move(text);
    };
    const json & ids = r.at(model, "vocab", "model");
    if (!ids.is_object()) r.unsupported("model.vocab", json(ids.type_name()));
    for (const auto & [text, id] : ids.items()) place(r.integer(id, "model.vocab"), text, "model.vocab");
    std::vector<std::pair<int64_t, bool>> added; // id, special
    if (root.contains("added_tokens")) {
        for (const json & t : root["added_tokens"]) {
            const int64_t id = r.integer(r.at(t, "id", "added_tokens[]"), "added_tokens[].id");
            place(id, r.string(r.at(t, "content", "added_tokens[]"), "added_tokens[].content"), "added_tokens");
            added.emplace_back(id, t.value("special", false));
        }
    }
    // config.json's vocab_size (the embedding rows) may exceed the tokenizer's ids
    if (const fs::path config = dir / "config.json"; is_dir && fs::exists(config, ec)) {
        const json c = read_json(config);
        if (c.contains("vocab_size") && c["vocab_size"].is_number_integer()) {
            const int64_t n = c["vocab_size"].get<int64_t>();
            if (n > int64_t(texts.size()) && n <= k_max_vocab) texts.resize(size_t(n));
        }
    }

    const size_t n = texts.size();
    v.tokens.resize(n);
    v.scores.assign(n, 0.0f);
    v.attrs.assign(n, token_attr::normal);
    for (size_t i = 0; i < n; ++i) {
        if (texts[i]) {
            v.tokens[i] = std::move(*texts[i]);
        } else {
            v.tokens[i] = fmt::format("[PAD{}]", i); // the converter's filler for unused ids
            v.attrs[i] = token_attr::unused;
        }
    }
    for (const auto & [id, special] : added) {
        std::string & text = v.tokens[size_t(id)];
        if (special || looks_special(text)) {
            v.attrs[size_t(id)] = token_attr::control;
        } else {
            v.attrs[size_t(id)] = token_attr::user_defined;
            // the converter pre-normalises user-defined spaces
            for (size_t at; (at = text.find("\xE2\x96\x81")) != std::string::npos;) text.replace(at, 3, " ");
        }
    }

    const json & merges = r.at(model, "merges", "model");
    v.merges.reserve(merges.size());
    for (const json & m : merges) {
        if (m.is_array() && m.size() == 2) {
            v.merges.push_back(r.string(m[0], "model.merges[][0]") + " " + r.string(m[1], "model.merges[][1]"));
        } else {
            std::string s = r.string(m, "model.merges[]");
            if (s.find(' ', 1) == std::string::npos)
                throw_error(status::invalid_model, "tokenizer: {}: merge '{}' is not 'left right'",
                            tokenizer_json.string(), s);
            v.merges.push_back(std::move(s));
        }
    }

    // BOS / EOS and whether encode adds them: tokenizer_config.json, else the post-processor
    v.bos = v.eos = v.eot = v.unk = v.pad = -1;
    auto id_of = [&](const std::string & text, std::string_view what) {
        for (size_t i = 0; i < n; ++i)
            if (v.tokens[i] == text) return int32_t(i);
        throw_error(status::invalid_model, "tokenizer: {} '{}' is not a token of {}", what, text,
                    tokenizer_json.string());
    };
    const auto lead = leading_special(root.value("post_processor", json()));
    v.add_bos = lead.has_value();
    v.add_eos = false;
    if (lead) v.bos = id_of(*lead, "post_processor's special token");
    if (model.contains("unk_token") && model["unk_token"].is_string()) v.unk = id_of(model["unk_token"], "unk_token");
    if (const fs::path config = dir / "tokenizer_config.json"; fs::exists(config, ec)) {
        const json c = read_json(config);
        const json_reader cr(config);
        if (auto t = cr.token_text(c, "bos_token")) v.bos = id_of(*t, "bos_token");
        if (auto t = cr.token_text(c, "eos_token")) v.eos = id_of(*t, "eos_token");
        if (auto t = cr.token_text(c, "pad_token")) v.pad = id_of(*t, "pad_token");
        if (c.contains("add_bos_token") && c["add_bos_token"].is_boolean()) v.add_bos = c["add_bos_token"].get<bool>();
        if (c.contains("add_eos_token") && c["add_eos_token"].is_boolean()) v.add_eos = c["add_eos_token"].get<bool>();
        if (c.contains("chat_template")) {
            const json & t = c["chat_template"];
            if (t.is_string()) {
                v.chat_template = t.get<std::string>();
            } else if (t.is_array()) { // named templates: the "default" one
                for (const json & named : t)
                    if (named.value("name", "") == "default") v.chat_template = named.value("template", "");
            }
        }
    }
    if (v.add_bos && v.bos < 0) v.add_bos = false; // nothing to add
    detail::mark_special_texts(v);
    return v;
}

} // namespace
} // namespace frugal
