// gguf.hpp - memory-mapped GGUF v2/v3 reader (MODEL-SPEC.md §3.1).
// Every count, length and offset read from the file is checked against the bytes that remain
// before it is used; a malformed file throws frugal::error(status::invalid_model) naming the
// problem and the offending value. Tensor data is used in place from the mapping.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "frugal/tensor_view.hpp"

namespace frugal::gguf {

enum class value_type : uint32_t {
    u8 = 0, i8 = 1, u16 = 2, i16 = 3, u32 = 4, i32 = 5, f32 = 6, boolean = 7,
    string = 8, array = 9, u64 = 10, i64 = 11, f64 = 12,
};
std::string_view value_type_name(value_type t);
// ggml's name of a tensor type id (MODEL-SPEC.md §3.1: "Q4_K", "IQ2_XXS", ...), frugal's types
// and the ones it does not read alike, so that a message can say what a file holds; "" for an id
// ggml never had.
std::string_view ggml_type_name(uint32_t id);

struct value;
// An array keeps its element type (an empty array still has one) and its elements. Scalar and
// string elements stay encoded in the file's bytes and are read on access: a vocabulary holds
// hundreds of thousands of them, which as parsed values cost tens of MiB. Nested arrays are
// parsed. Points into its file: valid while the file is.
struct array {
    value_type elem_type = value_type::u8;
    uint64_t count = 0;
    const std::byte * data = nullptr;     // the first element's bytes (scalars: count of them, packed)
    uint64_t byte_size = 0;               // all the elements' encoded bytes from data
    std::vector<uint64_t> string_offsets; // string elements: where each one's length prefix is, from data
    std::vector<value> arrays;            // array elements

    size_t size() const { return size_t(count); }
    bool empty() const { return count == 0; }
    value at(size_t i) const; // any element (a string one copied); i < size()
    // A string element in place; throws status::invalid_model naming key for other element types.
    std::string_view string_at(size_t i, std::string_view key) const;
};

struct value {
    value_type type = value_type::u8;
    std::variant<uint64_t, int64_t, double, bool, std::string, array> v;

    bool is_integer() const;
    bool is_float() const { return type == value_type::f32 || type == value_type::f64; }
    // Numeric reads accept any integer width (writers disagree on widths); throw on other types.
    int64_t as_int(std::string_view key) const;
    double as_float(std::string_view key) const; // integers accepted too
    bool as_bool(std::string_view key) const;
    const std::string & as_string(std::string_view key) const;
    const array & as_array(std::string_view key) const;
    // Short human rendering for `frugal info` (arrays summarised: type, count, first items).
    std::string to_display(size_t max_items = 8) const;
};

struct tensor_info {
    std::string name;
    std::vector<int64_t> ne;   // GGUF order: ne[0] innermost
    uint32_t ggml_type = 0;    // as stored (may be a type frugal cannot compute with)
    std::optional<dtype> type; // set when frugal knows the type
    uint64_t offset = 0;       // relative to the data section
    uint64_t n_bytes = 0;
    frugal::shape shape() const { return frugal::shape::from_ne(ne); }
};

class file {
public:
    // Opens and validates. use_mmap=false reads the whole file into memory instead.
    static std::shared_ptr<const file> open(const std::string & path, bool use_mmap = true);
    ~file();
    file(const file &) = delete;
    file & operator=(const file &) = delete;

    uint32_t version() const { return version_; }
    uint64_t alignment() const { return alignment_; }
    const std::string & path() const { return path_; }
    uint64_t file_size() const { return size_; }
    uint64_t data_offset() const { return data_offset_; }
    // Whether tensor data is mapped from the file (else read into memory).
    bool mapped() const { return mapped_; }
    // The caller no longer needs these mapped bytes (a tensor copied elsewhere): the whole pages
    // among them leave this process's resident set and are read again from the file if touched.
    // Contents never change. No effect when the file is not mapped.
    void release(std::span<const std::byte> bytes) const;
    // Maps the pages holding these bytes into this process now, on n_threads threads, reading
    // from disk what the page cache lacks (as llama.cpp's default MAP_POPULATE does for a whole
    // file), instead of as a kernel first touches each. No effect when the file is not mapped.
    void prefault(std::span<const std::byte> bytes, int n_threads) const;

    // Metadata, in file order.
    const std::vector<std::pair<std::string, value>> & metadata() const { return kv_; }
    const value * find(std::string_view key) const;
    // Typed getters: `get_*` throw status::invalid_model when the key is missing or has the
    // wrong type; `opt_*` return nullopt when missing (still throw on a wrong type).
    int64_t get_int(std::string_view key) const;
    std::optional<int64_t> opt_int(std::string_view key) const;
    std::optional<double> opt_float(std::string_view key) const;
    std::optional<bool> opt_bool(std::string_view key) const;
    std::string get_string(std::string_view key) const;
    std::optional<std::string> opt_string(std::string_view key) const;
    const array * opt_array(std::string_view key) const;

    const std::vector<tensor_info> & tensors() const { return tensors_; }
    const tensor_info * find_tensor(std::string_view name) const;
    // The tensor's bytes in place; throws status::unsupported_model when frugal cannot compute
    // with its type, status::invalid_model when it is missing.
    raw_view tensor(std::string_view name) const;
    std::span<const std::byte> tensor_bytes(const tensor_info & t) const;

private:
    file() = default;
    void parse();

    std::string path_;
    const std::byte * base_ = nullptr;
    uint64_t size_ = 0;
    bool mapped_ = false;
    std::unique_ptr<std::byte[]> owned_;
    uint32_t version_ = 0;
    uint64_t alignment_ = 32;
    uint64_t data_offset_ = 0;
    std::vector<std::pair<std::string, value>> kv_;
    std::map<std::string, size_t, std::less<>> kv_index_;
    std::vector<tensor_info> tensors_;
    std::map<std::string, size_t, std::less<>> tensor_index_;
};

} // namespace frugal::gguf
