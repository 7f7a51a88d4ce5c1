// gguf_builder.hpp - a small GGUF v2/v3 writer for tests, written from the file layout in
// MODEL-SPEC.md §3.1 (ggml docs/gguf.md) and independent of lib/runtime/gguf.cpp, so the tests can
// make valid files and malformed ones byte by byte:
//   - builder: header, typed metadata (every value type, nested arrays), tensor infos, alignment
//     padding and data; every count, type tag and offset can be overridden to lie about the rest;
//   - layout: where each field landed, for patching the built bytes (patch_u32 / patch_u64);
//   - tiny_llama(): a valid minimal `llama` model (SentencePiece vocab with <unk>, <s>, </s> and
//     the 256 byte tokens) that frugal loads and runs, so malformed variants reach deep into the
//     loader, the tokenizer and the model code rather than stopping at the header.
// Header-only, no frugal includes. Little-endian hosts only (as GGUF itself).
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <unistd.h>

#include "common/test_support.hpp"

namespace frugal::test::gguf {

static_assert(std::endian::native == std::endian::little, "the GGUF builder writes host-order integers");

inline constexpr uint32_t k_magic = 0x46554747; // "GGUF"
inline constexpr uint64_t k_default_alignment = 32;

enum class vtype : uint32_t {
    u8 = 0,
    i8 = 1,
    u16 = 2,
    i16 = 3,
    u32 = 4,
    i32 = 5,
    f32 = 6,
    boolean = 7,
    string = 8,
    array = 9,
    u64 = 10,
    i64 = 11,
    f64 = 12,
};

// ggml_type ids (MODEL-SPEC.md §3.1) the tests use.
namespace ggml {
inline constexpr uint32_t f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3, q8_0 = 8, q4_k = 12, q6_k = 14, iq2_xxs = 16, bf16 = 30;
} // namespace ggml

// Bytes of a tensor of ggml type `type` and extents `ne` (ne[0] innermost); nullopt when the type
// is not one of the few listed here or ne[0] is not a multiple of its block size.
inline std::optional<uint64_t> tensor_nbytes(uint32_t type, const std::vector<uint64_t> & ne) {
    uint64_t block = 1, bytes = 0;
    switch (type) {
    case ggml::f32: bytes = 4; break;
    case ggml::f16:
    case ggml::bf16: bytes = 2; break;
    case ggml::q4_0:
        block = 32;
        bytes = 18;
        break;
    case ggml::q8_0:
        block = 32;
        bytes = 34;
        break;
    case ggml::q4_k:
        block = 256;
        bytes = 144;
        break;
    case ggml::q6_k:
        block = 256;
        bytes = 210;
        break;
    default: return std::nullopt;
    }
    if (ne.empty() || ne[0] % block != 0) return std::nullopt;
    uint64_t n = ne[0] / block * bytes;
    for (size_t i = 1; i < ne.size(); ++i) n *= ne[i];
    return n;
}

// Little-endian byte sink that remembers where each integer field was written.
class bytes_writer {
public:
    std::vector<uint8_t> buf;
    std::vector<size_t> u32_fields, u64_fields; // offsets, in writing order

    size_t size() const { return buf.size(); }
    template <class T>
    void put(T v) {
        static_assert(std::is_trivially_copyable_v<T>);
        if constexpr (sizeof(T) == 4 && std::is_integral_v<T>) u32_fields.push_back(buf.size());
        if constexpr (sizeof(T) == 8 && std::is_integral_v<T>) u64_fields.push_back(buf.size());
        uint8_t b[sizeof(T)];
        std::memcpy(b, &v, sizeof(T));
        buf.insert(buf.end(), b, b + sizeof(T));
    }
    void raw(const void * p, size_t n) {
        const auto * b = static_cast<const uint8_t *>(p);
        buf.insert(buf.end(), b, b + n);
    }
    // A gguf string: u64 length (or `len_override`) + bytes, no NUL.
    void str(std::string_view s, std::optional<uint64_t> len_override = std::nullopt) {
        put<uint64_t>(len_override.value_or(s.size()));
        raw(s.data(), s.size());
    }
    void pad_to(uint64_t alignment) {
        if (alignment == 0) return;
        while (buf.size() % alignment != 0) buf.push_back(0);
    }
};

// One metadata value. Scalars keep their bytes in `bits` (low bytes used), strings in `str`,
// arrays an element type and items (nested arrays allowed). The overrides write a different type
// tag / count / string length than the value really has, for malformed files.
struct value {
    vtype type = vtype::u8;
    uint64_t bits = 0;
    std::string str;
    vtype elem = vtype::u8;
    std::vector<value> items;
    std::optional<uint32_t> tag_override;      // the u32 type tag written before a top-level value
    std::optional<uint32_t> elem_tag_override; // arrays: the element type written
    std::optional<uint64_t> count_override;    // arrays: element count; strings: byte length
};

namespace detail {
template <class T>
value scalar(vtype t, T x) {
    value v;
    v.type = t;
    std::memcpy(&v.bits, &x, sizeof(T));
    return v;
}
} // namespace detail

inline value u8(uint8_t x) { return detail::scalar(vtype::u8, x); }
inline value i8(int8_t x) { return detail::scalar(vtype::i8, x); }
inline value u16(uint16_t x) { return detail::scalar(vtype::u16, x); }
inline value i16(int16_t x) { return detail::scalar(vtype::i16, x); }
inline value u32(uint32_t x) { return detail::scalar(vtype::u32, x); }
inline value i32(int32_t x) { return detail::scalar(vtype::i32, x); }
inline value u64(uint64_t x) { return detail::scalar(vtype::u64, x); }
inline value i64(int64_t x) { return detail::scalar(vtype::i64, x); }
inline value f32(float x) { return detail::scalar(vtype::f32, x); }
inline value f64(double x) { return detail::scalar(vtype::f64, x); }
// A bool is one byte; raw_bool writes any byte (the spec allows only 0 and 1).
inline value boolean(bool x) { return detail::scalar(vtype::boolean, uint8_t(x ? 1 : 0)); }
inline value raw_bool(uint8_t byte) { return detail::scalar(vtype::boolean, byte); }
inline value str(std::string s) {
    value v;
    v.type = vtype::string;
    v.str = std::move(s);
    return v;
}
inline value arr(vtype elem, std::vector<value> items) {
    value v;
    v.type = vtype::array;
    v.elem = elem;
    v.items = std::move(items);
    return v;
}
inline value arr_str(const std::vector<std::string> & xs) {
    std::vector<value> items;
    items.reserve(xs.size());
    for (const auto & x : xs) items.push_back(str(x));
    return arr(vtype::string, std::move(items));
}
inline value arr_f32(const std::vector<float> & xs) {
    std::vector<value> items;
    items.reserve(xs.size());
    for (float x : xs) items.push_back(f32(x));
    return arr(vtype::f32, std::move(items));
}
inline value arr_i32(const std::vector<int32_t> & xs) {
    std::vector<value> items;
    items.reserve(xs.size());
    for (int32_t x : xs) items.push_back(i32(x));
    return arr(vtype::i32, std::move(items));
}

// Writes a value's payload (not its type tag).
inline void encode(bytes_writer & w, const value & v) {
    switch (v.type) {
    case vtype::u8:
    case vtype::i8:
    case vtype::boolean: w.put(uint8_t(v.bits)); break;
    case vtype::u16:
    case vtype::i16: w.put(uint16_t(v.bits)); break;
    case vtype::u32:
    case vtype::i32:
    case vtype::f32: w.put(uint32_t(v.bits)); break;
    case vtype::u64:
    case vtype::i64:
    case vtype::f64: w.put(uint64_t(v.bits)); break;
    case vtype::string: w.str(v.str, v.count_override); break;
    case vtype::array:
        w.put<uint32_t>(v.elem_tag_override.value_or(uint32_t(v.elem)));
        w.put<uint64_t>(v.count_override.value_or(v.items.size()));
        for (const auto & it : v.items) encode(w, it);
        break;
    }
}

struct tensor {
    std::string name;
    std::vector<uint64_t> ne; // ne[0] innermost
    uint32_t type = ggml::f32;
    std::vector<uint8_t> data;      // bytes written to the data section
    std::optional<uint64_t> offset; // default: after the previous tensor, aligned
    std::optional<uint32_t> n_dims_override;
    std::optional<uint64_t> name_len_override;
};

// Where the fields of a built file are (byte offsets from the start of the file).
struct layout {
    struct tensor_fields {
        size_t at = 0; // the name's u64 length
        size_t n_dims_at = 0;
        size_t ne_at = 0; // ne[0]; ne[i] at ne_at + 8 i
        size_t type_at = 0;
        size_t offset_at = 0;
        uint64_t offset = 0; // relative to the data section
    };
    size_t tensor_count_at = 8, kv_count_at = 16;
    size_t kv_begin = 24;
    std::map<std::string, size_t> key_at;   // first occurrence of each key: its u64 length
    std::map<std::string, size_t> value_at; // ... its u32 type tag
    size_t tensor_info_begin = 0, tensor_info_end = 0, data_begin = 0, file_size = 0;
    std::map<std::string, tensor_fields> tensors;
    std::vector<size_t> u32_fields, u64_fields; // every integer field before the data section
};

class builder {
public:
    uint32_t magic = k_magic;
    uint32_t version = 3;
    std::optional<uint64_t> tensor_count;     // written instead of tensors.size()
    std::optional<uint64_t> kv_count;         // written instead of kv.size()
    uint64_t alignment = k_default_alignment; // layout; the general.alignment key is separate
    bool pad_after_last = false;              // pad the file after the last tensor's bytes
    std::vector<std::pair<std::string, value>> kv;
    std::vector<tensor> tensors;

    value * find(std::string_view key) {
        for (auto & [k, v] : kv)
            if (k == key) return &v;
        return nullptr;
    }
    value & get(std::string_view key) {
        if (value * p = find(key)) return *p;
        throw std::out_of_range("gguf builder: no key " + std::string(key));
    }
    // Replaces the value of `key` (keeping its position) or appends it.
    builder & set(const std::string & key, value v) {
        if (value * p = find(key))
            *p = std::move(v);
        else
            kv.emplace_back(key, std::move(v));
        return *this;
    }
    // Appends, even if the key exists (for duplicates).
    builder & add(const std::string & key, value v) {
        kv.emplace_back(key, std::move(v));
        return *this;
    }
    bool remove(std::string_view key) {
        for (auto it = kv.begin(); it != kv.end(); ++it)
            if (it->first == key) {
                kv.erase(it);
                return true;
            }
        return false;
    }

    tensor * find_tensor(std::string_view name) {
        for (auto & t : tensors)
            if (t.name == name) return &t;
        return nullptr;
    }
    tensor & get_tensor(std::string_view name) {
        if (tensor * t = find_tensor(name)) return *t;
        throw std::out_of_range("gguf builder: no tensor " + std::string(name));
    }
    tensor & add_tensor(std::string name, std::vector<uint64_t> ne, uint32_t type, std::vector<uint8_t> data) {
        tensors.push_back(tensor{std::move(name), std::move(ne), type, std::move(data), {}, {}, {}});
        return tensors.back();
    }
    // An f32 tensor with the given values (ne's product must equal values.size()).
    tensor & add_f32(std::string name, std::vector<uint64_t> ne, const std::vector<float> & values) {
        std::vector<uint8_t> data(values.size() * sizeof(float));
        if (!values.empty()) std::memcpy(data.data(), values.data(), data.size());
        return add_tensor(std::move(name), std::move(ne), ggml::f32, std::move(data));
    }
    bool remove_tensor(std::string_view name) {
        for (auto it = tensors.begin(); it != tensors.end(); ++it)
            if (it->name == name) {
                tensors.erase(it);
                return true;
            }
        return false;
    }

    std::vector<uint8_t> build(layout * out = nullptr) const {
        layout L;
        bytes_writer w;
        w.put<uint32_t>(magic);
        w.put<uint32_t>(version);
        L.tensor_count_at = w.size();
        w.put<uint64_t>(tensor_count.value_or(tensors.size()));
        L.kv_count_at = w.size();
        w.put<uint64_t>(kv_count.value_or(kv.size()));
        L.kv_begin = w.size();
        for (const auto & [k, v] : kv) {
            L.key_at.emplace(k, w.size());
            w.str(k);
            L.value_at.emplace(k, w.size());
            w.put<uint32_t>(v.tag_override.value_or(uint32_t(v.type)));
            encode(w, v);
        }
        L.tensor_info_begin = w.size();
        uint64_t next = 0;
        std::vector<uint64_t> offsets;
        for (const auto & t : tensors) {
            layout::tensor_fields f;
            f.at = w.size();
            w.str(t.name, t.name_len_override);
            f.n_dims_at = w.size();
            w.put<uint32_t>(t.n_dims_override.value_or(uint32_t(t.ne.size())));
            f.ne_at = w.size();
            for (uint64_t n : t.ne) w.put<uint64_t>(n);
            f.type_at = w.size();
            w.put<uint32_t>(t.type);
            f.offset_at = w.size();
            if (alignment) next = (next + alignment - 1) / alignment * alignment;
            f.offset = t.offset.value_or(next);
            if (!t.offset) next += t.data.size();
            w.put<uint64_t>(f.offset);
            offsets.push_back(f.offset);
            L.tensors.emplace(t.name, f);
        }
        L.tensor_info_end = w.size();
        L.u32_fields = w.u32_fields;
        L.u64_fields = w.u64_fields;
        w.pad_to(alignment);
        L.data_begin = w.size();

        // Data section: each tensor's bytes at its offset (later tensors win where they overlap);
        // offsets far past anything reasonable are only written in the tensor info.
        constexpr uint64_t k_max_data = uint64_t(1) << 26;
        uint64_t data_size = 0;
        for (size_t i = 0; i < tensors.size(); ++i)
            if (offsets[i] <= k_max_data) data_size = std::max(data_size, offsets[i] + tensors[i].data.size());
        std::vector<uint8_t> data(data_size, 0);
        for (size_t i = 0; i < tensors.size(); ++i)
            if (offsets[i] <= k_max_data && !tensors[i].data.empty())
                std::memcpy(data.data() + offsets[i], tensors[i].data.data(), tensors[i].data.size());
        w.raw(data.data(), data.size());
        if (pad_after_last) w.pad_to(alignment);
        L.file_size = w.size();
        if (out) *out = std::move(L);
        return std::move(w.buf);
    }
};

inline void patch_u32(std::vector<uint8_t> & bytes, size_t at, uint32_t v) {
    if (at + 4 > bytes.size()) throw std::out_of_range("patch_u32 past the end");
    std::memcpy(bytes.data() + at, &v, 4);
}
inline void patch_u64(std::vector<uint8_t> & bytes, size_t at, uint64_t v) {
    if (at + 8 > bytes.size()) throw std::out_of_range("patch_u64 past the end");
    std::memcpy(bytes.data() + at, &v, 8);
}

inline void write_file(const std::filesystem::path & path, const std::vector<uint8_t> & bytes) {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char *>(bytes.data()), std::streamsize(bytes.size()));
    if (!f) throw std::runtime_error("cannot write " + path.string());
}

// Writes `b` as <build>/tests/scratch/<area>/<name> and returns the path. Concurrent test processes
// may write the same deterministic model: each writes a private file and renames it into place.
inline std::filesystem::path write_scratch_model(const std::string & area, const std::string & name,
                                                 const builder & b) {
    const auto dir = frugal::test::scratch_dir(area);
    const auto tmp = dir / (name + "." + std::to_string(::getpid()));
    write_file(tmp, b.build());
    std::filesystem::rename(tmp, dir / name);
    return dir / name;
}

// ---- a valid minimal llama model ---------------------------------------------------------

struct tiny_llama_params {
    uint32_t version = 3;
    int n_embd = 8;
    int n_layer = 1;
    int n_head = 2;
    int n_head_kv = 1;
    int n_ff = 16;
    int n_ctx = 64;
    uint32_t seed = 1;         // weights
    bool extra_keys = true;    // a key of every value type, nested and empty arrays
    bool output_weight = true; // else the classifier is tied to token_embd
};

// The vocabulary: <unk>, <s>, </s>, <0x00>..<0xFF>, then a few SentencePiece pieces.
inline std::vector<std::string> tiny_llama_tokens() {
    std::vector<std::string> t = {"<unk>", "<s>", "</s>"};
    static const char hex[] = "0123456789ABCDEF";
    for (int b = 0; b < 256; ++b) t.push_back(std::string("<0x") + hex[b >> 4] + hex[b & 15] + ">");
    const std::string sp = "\xE2\x96\x81"; // U+2581, SentencePiece's space
    for (const char * p : {"a", "b", "c", "e", "h", "t", "ab", "he", "the"}) {
        t.push_back(p);
        t.push_back(sp + p);
    }
    t.push_back(sp);
    return t;
}

inline builder tiny_llama(const tiny_llama_params & p = {}) {
    builder b;
    b.version = p.version;
    const auto tokens = tiny_llama_tokens();
    const auto n_vocab = uint64_t(tokens.size());
    std::vector<float> scores(tokens.size());
    std::vector<int32_t> types(tokens.size());
    for (size_t i = 0; i < tokens.size(); ++i) {
        const bool byte = i >= 3 && i < 3 + 256;
        types[i] = i == 0 ? 2 : (i < 3 ? 3 : (byte ? 6 : 1)); // unknown, control, byte, normal
        // SPM merges the best-scoring pair first: longer pieces score higher than their parts.
        scores[i] = i < 3 || byte ? 0.0f : -100.0f + float(tokens[i].size());
    }

    b.set("general.architecture", str("llama"));
    b.set("general.name", str("tiny-llama"));
    b.set("general.alignment", u32(uint32_t(k_default_alignment)));
    b.set("llama.context_length", u32(uint32_t(p.n_ctx)));
    b.set("llama.embedding_length", u32(uint32_t(p.n_embd)));
    b.set("llama.block_count", u32(uint32_t(p.n_layer)));
    b.set("llama.feed_forward_length", u32(uint32_t(p.n_ff)));
    b.set("llama.attention.head_count", u32(uint32_t(p.n_head)));
    b.set("llama.attention.head_count_kv", u32(uint32_t(p.n_head_kv)));
    b.set("llama.rope.dimension_count", u32(uint32_t(p.n_embd / p.n_head)));
    b.set("llama.attention.layer_norm_rms_epsilon", f32(1e-5f));
    b.set("tokenizer.ggml.model", str("llama"));
    b.set("tokenizer.ggml.tokens", arr_str(tokens));
    b.set("tokenizer.ggml.scores", arr_f32(scores));
    b.set("tokenizer.ggml.token_type", arr_i32(types));
    b.set("tokenizer.ggml.bos_token_id", u32(1));
    b.set("tokenizer.ggml.eos_token_id", u32(2));
    b.set("tokenizer.ggml.unknown_token_id", u32(0));
    if (p.extra_keys) {
        b.set("test.u8", u8(200));
        b.set("test.i8", i8(-100));
        b.set("test.u16", u16(60000));
        b.set("test.i16", i16(-30000));
        b.set("test.u32", u32(4000000000u));
        b.set("test.i32", i32(-2000000000));
        b.set("test.f32", f32(1.5f));
        b.set("test.bool", boolean(true));
        b.set("test.string", str("hello"));
        b.set("test.u64", u64(uint64_t(1) << 40));
        b.set("test.i64", i64(-(int64_t(1) << 40)));
        b.set("test.f64", f64(-2.25));
        b.set("test.array.empty", arr(vtype::u8, {}));
        b.set("test.array.nested", arr(vtype::array, {arr_i32({1, 2}), arr(vtype::array, {arr_str({"x", "yz"})})}));
        b.set("test.array.i16", arr(vtype::i16, {i16(-3), i16(7), i16(300)}));
        b.set("test.array.u64", arr(vtype::u64, {u64(uint64_t(1) << 40), u64(5)}));
        b.set("test.array.f64", arr(vtype::f64, {f64(0.5), f64(-1.25)}));
        b.set("test.array.bool", arr(vtype::boolean, {boolean(true), boolean(false)}));
    }

    // Deterministic small weights (an LCG, the same on every platform); norms are 1.
    uint32_t state = p.seed * 2654435761u + 12345u;
    auto rnd = [&](size_t n) {
        std::vector<float> v(n);
        for (auto & x : v) {
            state = state * 1664525u + 1013904223u;
            x = (float(state >> 8) / float(1u << 24) - 0.5f) * 0.5f;
        }
        return v;
    };
    const auto E = uint64_t(p.n_embd), F = uint64_t(p.n_ff), hd = E / uint64_t(p.n_head);
    const uint64_t q_dim = uint64_t(p.n_head) * hd, kv_dim = uint64_t(p.n_head_kv) * hd;
    b.add_f32("token_embd.weight", {E, n_vocab}, rnd(E * n_vocab));
    b.add_f32("output_norm.weight", {E}, std::vector<float>(E, 1.0f));
    if (p.output_weight) b.add_f32("output.weight", {E, n_vocab}, rnd(E * n_vocab));
    for (int l = 0; l < p.n_layer; ++l) {
        const std::string k = "blk." + std::to_string(l) + ".";
        b.add_f32(k + "attn_norm.weight", {E}, std::vector<float>(E, 1.0f));
        b.add_f32(k + "attn_q.weight", {E, q_dim}, rnd(E * q_dim));
        b.add_f32(k + "attn_k.weight", {E, kv_dim}, rnd(E * kv_dim));
        b.add_f32(k + "attn_v.weight", {E, kv_dim}, rnd(E * kv_dim));
        b.add_f32(k + "attn_output.weight", {q_dim, E}, rnd(q_dim * E));
        b.add_f32(k + "ffn_norm.weight", {E}, std::vector<float>(E, 1.0f));
        b.add_f32(k + "ffn_gate.weight", {E, F}, rnd(E * F));
        b.add_f32(k + "ffn_up.weight", {E, F}, rnd(E * F));
        b.add_f32(k + "ffn_down.weight", {F, E}, rnd(F * E));
    }
    return b;
}

} // namespace frugal::test::gguf
