#include "runtime/gguf.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "util/error.hpp"
#include "util/log.hpp"

namespace frugal::gguf {
namespace {

constexpr uint32_t k_magic = 0x46554747; // "GGUF" little-endian
constexpr uint64_t k_max_string = 1ull << 30;   // no key, name or token is a gigabyte
constexpr uint64_t k_max_name = 64 * 1024;
constexpr int k_max_array_depth = 4;

// Bounds-checked little-endian reader over the file's bytes.
class cursor {
public:
    cursor(const std::byte * base, uint64_t size) : base_(base), size_(size) {}
    uint64_t pos() const { return pos_; }
    uint64_t remaining() const { return size_ - pos_; }

    void need(uint64_t n, std::string_view what) const {
        if (n > remaining())
            throw_error(status::invalid_model, "gguf: truncated file: {} needs {} bytes at offset {}, {} left",
                        what, n, pos_, remaining());
    }
    template <class T>
    T read(std::string_view what) {
        need(sizeof(T), what);
        T v;
        std::memcpy(&v, base_ + pos_, sizeof(T));
        pos_ += sizeof(T);
        return v;
    }
    std::string read_string(std::string_view what, uint64_t max_len = k_max_string) {
        const auto len = read<uint64_t>(what);
        if (len > max_len)
            throw_error(status::invalid_model, "gguf: {} has length {} at offset {}, limit {}", what, len,
                        pos_ - 8, max_len);
        need(len, what);
        std::string s(reinterpret_cast<const char *>(base_ + pos_), size_t(len));
        pos_ += len;
        return s;
    }
    const std::byte * here() const { return base_ + pos_; }
    void skip(uint64_t n, std::string_view what) {
        need(n, what);
        pos_ += n;
    }

private:
    const std::byte * base_;
    uint64_t size_;
    uint64_t pos_ = 0;
};

// Minimum bytes one element of a type occupies in the file; lets a count be checked against
// the remaining bytes before anything is allocated for it.
uint64_t min_encoded_size(value_type t) {
    switch (t) {
    case value_type::u8: case value_type::i8: case value_type::boolean: return 1;
    case value_type::u16: case value_type::i16: return 2;
    case value_type::u32: case value_type::i32: case value_type::f32: return 4;
    case value_type::u64: case value_type::i64: case value_type::f64: case value_type::string: return 8;
    case value_type::array: return 12;
    }
    return 1;
}

value_type checked_type(uint32_t raw, std::string_view key) {
    if (raw > uint32_t(value_type::f64))
        throw_error(status::invalid_model, "gguf: {}: unknown value type {}", key, raw);
    return value_type(raw);
}

value read_value(cursor & c, value_type t, std::string_view key, int depth) {
    value out;
    out.type = t;
    switch (t) {
    case value_type::u8: out.v = uint64_t(c.read<uint8_t>(key)); break;
    case value_type::u16: out.v = uint64_t(c.read<uint16_t>(key)); break;
    case value_type::u32: out.v = uint64_t(c.read<uint32_t>(key)); break;
    case value_type::u64: out.v = c.read<uint64_t>(key); break;
    case value_type::i8: out.v = int64_t(c.read<int8_t>(key)); break;
    case value_type::i16: out.v = int64_t(c.read<int16_t>(key)); break;
    case value_type::i32: out.v = int64_t(c.read<int32_t>(key)); break;
    case value_type::i64: out.v = c.read<int64_t>(key); break;
    case value_type::f32: out.v = double(c.read<float>(key)); break;
    case value_type::f64: out.v = c.read<double>(key); break;
    case value_type::boolean: {
        const auto b = c.read<uint8_t>(key);
        if (b > 1) throw_error(status::invalid_model, "gguf: {}: bool value {} is not 0 or 1", key, b);
        out.v = b == 1;
        break;
    }
    case value_type::string: out.v = c.read_string(key); break;
    case value_type::array: {
        if (depth >= k_max_array_depth)
            throw_error(status::invalid_model, "gguf: {}: arrays nested deeper than {}", key, k_max_array_depth);
        array a;
        a.elem_type = checked_type(c.read<uint32_t>(key), key);
        const auto n = c.read<uint64_t>(key);
        // Each element needs at least min_encoded_size bytes: this bounds n by the file size.
        if (n > c.remaining() / min_encoded_size(a.elem_type))
            throw_error(status::invalid_model, "gguf: {}: array count {} exceeds the {} bytes left in the file",
                        key, n, c.remaining());
        a.count = n;
        a.data = c.here();
        const uint64_t start = c.pos();
        switch (a.elem_type) {
        case value_type::array:
            a.arrays.reserve(size_t(n));
            for (uint64_t i = 0; i < n; ++i) a.arrays.push_back(read_value(c, a.elem_type, key, depth + 1));
            break;
        case value_type::string:
            a.string_offsets.reserve(size_t(n));
            for (uint64_t i = 0; i < n; ++i) {
                a.string_offsets.push_back(c.pos() - start);
                const auto len = c.read<uint64_t>(key);
                if (len > k_max_string)
                    throw_error(status::invalid_model, "gguf: {}[{}] has length {} at offset {}, limit {}", key, i,
                                len, c.pos() - 8, k_max_string);
                c.skip(len, key);
            }
            break;
        case value_type::boolean:
            for (uint64_t i = 0; i < n; ++i) read_value(c, a.elem_type, key, depth + 1); // each checked
            break;
        default: c.skip(n * min_encoded_size(a.elem_type), key); // n was bounded by the bytes left
        }
        a.byte_size = c.pos() - start;
        out.v = std::move(a);
        break;
    }
    }
    return out;
}

[[noreturn]] void wrong_type(std::string_view key, value_type have, std::string_view want) {
    throw_error(status::invalid_model, "gguf: {}: has type {}, want {}", key, value_type_name(have), want);
}

} // namespace

std::string_view value_type_name(value_type t) {
    static constexpr std::string_view names[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32",
                                                 "bool", "string", "array", "u64", "i64", "f64"};
    const auto i = size_t(t);
    return i < std::size(names) ? names[i] : "?";
}

std::string_view ggml_type_name(uint32_t id) {
    static constexpr std::string_view names[] = {
        "F32",    "F16",   "Q4_0",  "Q4_1",    "",      "",       "Q5_0",  "Q5_1",  "Q8_0",  "Q8_1",   "Q2_K",
        "Q3_K",   "Q4_K",  "Q5_K",  "Q6_K",    "Q8_K",  "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ4_NL", "IQ3_S",
        "IQ2_S",  "IQ4_XS", "I8",   "I16",     "I32",   "I64",    "F64",   "IQ1_M", "BF16",  "",       "",
        "",       "TQ1_0", "TQ2_0", "",        "",      "",       "MXFP4", "NVFP4", "Q1_0"};
    return id < std::size(names) ? names[id] : "";
}

bool value::is_integer() const {
    return std::holds_alternative<uint64_t>(v) || std::holds_alternative<int64_t>(v);
}

int64_t value::as_int(std::string_view key) const {
    if (const auto * u = std::get_if<uint64_t>(&v)) {
        if (*u > uint64_t(INT64_MAX)) throw_error(status::invalid_model, "gguf: {}: value {} out of range", key, *u);
        return int64_t(*u);
    }
    if (const auto * i = std::get_if<int64_t>(&v)) return *i;
    wrong_type(key, type, "an integer");
}

double value::as_float(std::string_view key) const {
    if (const auto * d = std::get_if<double>(&v)) return *d;
    if (is_integer()) return double(as_int(key));
    wrong_type(key, type, "a number");
}

bool value::as_bool(std::string_view key) const {
    if (const auto * b = std::get_if<bool>(&v)) return *b;
    if (is_integer()) return as_int(key) != 0;
    wrong_type(key, type, "bool");
}

const std::string & value::as_string(std::string_view key) const {
    if (const auto * s = std::get_if<std::string>(&v)) return *s;
    wrong_type(key, type, "string");
}

const array & value::as_array(std::string_view key) const {
    if (const auto * a = std::get_if<array>(&v)) return *a;
    wrong_type(key, type, "array");
}

std::string value::to_display(size_t max_items) const {
    return std::visit(
        [&](const auto & x) -> std::string {
            using T = std::decay_t<decltype(x)>;
            if constexpr (std::is_same_v<T, std::string>) {
                std::string s = x.size() > 80 ? x.substr(0, 77) + "..." : x;
                for (auto & ch : s)
                    if (ch == '\n') ch = ' ';
                return fmt::format("\"{}\"", s);
            } else if constexpr (std::is_same_v<T, array>) {
                std::string s = fmt::format("{}[{}] [", value_type_name(x.elem_type), x.size());
                for (size_t i = 0; i < x.size() && i < max_items; ++i)
                    s += (i ? ", " : "") + x.at(i).to_display(max_items);
                return s + (x.size() > max_items ? ", ...]" : "]");
            } else if constexpr (std::is_same_v<T, bool>) {
                return x ? "true" : "false";
            } else {
                return fmt::format("{}", x);
            }
        },
        v);
}

file::~file() {
    if (mapped_ && base_) munmap(const_cast<std::byte *>(base_), size_t(size_));
}

void file::release(std::span<const std::byte> bytes) const {
    if (!mapped_ || bytes.empty()) return;
    // Only whole pages: a partial page at either end may hold a neighbour still in use.
    const auto page = uintptr_t(sysconf(_SC_PAGE_SIZE));
    const uintptr_t first = (uintptr_t(bytes.data()) + page - 1) / page * page;
    const uintptr_t last = (uintptr_t(bytes.data()) + bytes.size()) / page * page;
    // Advisory: on failure the pages simply stay resident.
    if (first < last) madvise(reinterpret_cast<void *>(first), last - first, MADV_DONTNEED);
}

void file::prefault(std::span<const std::byte> bytes, int n_threads) const {
    if (!mapped_ || bytes.empty()) return;
    const auto page = uintptr_t(sysconf(_SC_PAGE_SIZE));
    const uintptr_t first = uintptr_t(bytes.data()) / page * page, last = uintptr_t(bytes.data()) + bytes.size();
    // Chunks of 32 MiB on the threads. MADV_POPULATE_READ (Linux 5.14) maps a chunk in one call
    // (a 3.6 GiB file in the page cache: 0.27 s on one thread of a Zen 5, 0.13-0.15 s on two);
    // kernels that do not know it refuse it (EINVAL), and a read of one byte per page does it.
    // Any other failure (EFAULT: the file shrank since it was mapped, EIO) leaves the pages to be
    // faulted as they are used: touching them here could raise SIGBUS in the host program.
    constexpr uintptr_t chunk = uintptr_t(32) << 20;
    const auto n_chunks = int64_t((last - first + chunk - 1) / chunk);
#pragma omp parallel for num_threads(std::max(1, n_threads)) schedule(static, 1) if (n_chunks > 1)
    for (int64_t c = 0; c < n_chunks; ++c) {
        const uintptr_t at = first + uintptr_t(c) * chunk, n = std::min(chunk, last - at);
#ifdef MADV_POPULATE_READ
        if (madvise(reinterpret_cast<void *>(at), n, MADV_POPULATE_READ) == 0 || errno != EINVAL) continue;
#endif
        const volatile std::byte * p = reinterpret_cast<const std::byte *>(at);
        for (uintptr_t o = 0; o < n; o += page) (void)p[o];
    }
}

std::shared_ptr<const file> file::open(const std::string & path, bool use_mmap) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw_error(status::io, "gguf: cannot open {}: {}", path, std::strerror(errno));
    struct fd_guard {
        int fd;
        ~fd_guard() { ::close(fd); }
    } guard{fd};
    struct stat st {};
    if (fstat(fd, &st) != 0) throw_error(status::io, "gguf: cannot stat {}: {}", path, std::strerror(errno));
    if (!S_ISREG(st.st_mode)) throw_error(status::io, "gguf: {} is not a regular file", path);

    std::shared_ptr<file> f(new file());
    f->path_ = path;
    f->size_ = uint64_t(st.st_size);
    if (f->size_ == 0) throw_error(status::invalid_model, "gguf: {} is empty", path);
    if (use_mmap) {
        void * p = mmap(nullptr, size_t(f->size_), PROT_READ, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED) throw_error(status::io, "gguf: cannot map {}: {}", path, std::strerror(errno));
        // Huge pages where the page cache holds 2 MiB folios, and reads from disk into such
        // folios (readahead takes the mapping's advice). Advisory.
        madvise(p, size_t(f->size_), MADV_HUGEPAGE);
        f->base_ = static_cast<const std::byte *>(p);
        f->mapped_ = true;
    } else {
        f->owned_.reset(new std::byte[size_t(f->size_)]);
        uint64_t done = 0;
        while (done < f->size_) {
            const ssize_t r = ::pread(fd, f->owned_.get() + done, size_t(f->size_ - done), off_t(done));
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) throw_error(status::io, "gguf: cannot read {}: {}", path, r < 0 ? std::strerror(errno) : "short read");
            done += uint64_t(r);
        }
        f->base_ = f->owned_.get();
    }
    f->parse();
    return f;
}

void file::parse() {
    cursor c(base_, size_);
    const auto magic = c.read<uint32_t>("magic");
    if (magic != k_magic) throw_error(status::invalid_model, "gguf: {}: bad magic 0x{:08x}, not a GGUF file", path_, magic);
    version_ = c.read<uint32_t>("version");
    if (version_ != 2 && version_ != 3)
        throw_error(status::invalid_model, "gguf: {}: unsupported version {} (want 2 or 3)", path_, version_);
    const auto n_tensors = c.read<uint64_t>("tensor_count");
    const auto n_kv = c.read<uint64_t>("metadata_kv_count");
    // A key-value pair takes at least 8 (key length) + 4 (type) + 1 bytes, a tensor info at least 8 + 4 + 4 + 8.
    if (n_kv > c.remaining() / 13)
        throw_error(status::invalid_model, "gguf: {}: metadata count {} exceeds the file size", path_, n_kv);
    if (n_tensors > c.remaining() / 24)
        throw_error(status::invalid_model, "gguf: {}: tensor count {} exceeds the file size", path_, n_tensors);

    kv_.reserve(size_t(n_kv));
    for (uint64_t i = 0; i < n_kv; ++i) {
        std::string key = c.read_string("metadata key", k_max_name);
        const auto t = checked_type(c.read<uint32_t>(key), key);
        value v = read_value(c, t, key, 0);
        if (kv_index_.contains(key)) throw_error(status::invalid_model, "gguf: {}: duplicate metadata key {}", path_, key);
        kv_index_.emplace(key, kv_.size());
        kv_.emplace_back(std::move(key), std::move(v));
    }

    if (const auto * a = find("general.alignment")) {
        const int64_t al = a->as_int("general.alignment");
        if (al <= 0 || al % 8 != 0 || al > (1 << 20))
            throw_error(status::invalid_model, "gguf: {}: general.alignment {} is not a multiple of 8 in [8, {}]", path_,
                        al, 1 << 20);
        alignment_ = uint64_t(al);
    }

    tensors_.reserve(size_t(n_tensors));
    for (uint64_t i = 0; i < n_tensors; ++i) {
        tensor_info t;
        t.name = c.read_string("tensor name", k_max_name);
        const auto n_dims = c.read<uint32_t>(t.name);
        if (n_dims == 0 || n_dims > uint32_t(k_max_rank))
            throw_error(status::invalid_model, "gguf: {}: tensor {} has {} dimensions (1..{} allowed)", path_, t.name,
                        n_dims, k_max_rank);
        uint64_t numel = 1;
        for (uint32_t d = 0; d < n_dims; ++d) {
            const auto ne = c.read<uint64_t>(t.name);
            // Cap every extent and the product at 2^62 so later int64 arithmetic cannot overflow.
            if (ne == 0 || ne > (1ull << 62) || numel > (1ull << 62) / ne)
                throw_error(status::invalid_model, "gguf: {}: tensor {} dimension {} is {} (empty or too large)", path_,
                            t.name, d, ne);
            numel *= ne;
            t.ne.push_back(int64_t(ne));
        }
        t.ggml_type = c.read<uint32_t>(t.name);
        t.offset = c.read<uint64_t>(t.name);
        t.type = dtype_from_ggml(t.ggml_type);
        if (t.type) {
            const auto tr = traits(*t.type);
            if (t.ne[0] % tr.block_size != 0)
                throw_error(status::invalid_model, "gguf: {}: tensor {} row of {} elements is not a multiple of the {} block size {}",
                            path_, t.name, t.ne[0], tr.name, tr.block_size);
            // numel may be up to 2^62, so the byte count could wrap: bound it by the file size first.
            const uint64_t n_blocks = numel / uint64_t(tr.block_size);
            if (n_blocks > size_ / uint64_t(tr.block_bytes))
                throw_error(status::invalid_model, "gguf: {}: tensor {} of {} {} elements is larger than the file ({} bytes)",
                            path_, t.name, numel, tr.name, size_);
            t.n_bytes = n_blocks * uint64_t(tr.block_bytes);
        }
        if (t.offset % alignment_ != 0)
            throw_error(status::invalid_model, "gguf: {}: tensor {} offset {} is not aligned to {}", path_, t.name,
                        t.offset, alignment_);
        if (tensor_index_.contains(t.name)) throw_error(status::invalid_model, "gguf: {}: duplicate tensor {}", path_, t.name);
        tensor_index_.emplace(t.name, tensors_.size());
        tensors_.push_back(std::move(t));
    }

    data_offset_ = (c.pos() + alignment_ - 1) / alignment_ * alignment_;
    if (data_offset_ > size_ && !tensors_.empty())
        throw_error(status::invalid_model, "gguf: {}: data section at {} is past the end of the file ({} bytes)", path_,
                    data_offset_, size_);
    const uint64_t data_size = size_ > data_offset_ ? size_ - data_offset_ : 0;

    // Bounds and overlap: sort (offset, size) spans and check each lies inside the data section
    // and after the previous one. Tensors of unknown types are kept (info lists them) but have
    // no known size, so they are excluded from this check and can never be read.
    std::vector<std::pair<uint64_t, const tensor_info *>> spans;
    for (const auto & t : tensors_) {
        if (!t.type) continue;
        if (t.offset > data_size || t.n_bytes > data_size - t.offset)
            throw_error(status::invalid_model, "gguf: {}: tensor {} [{} bytes at offset {}] runs past the end of the data section ({} bytes)",
                        path_, t.name, t.n_bytes, t.offset, data_size);
        spans.emplace_back(t.offset, &t);
    }
    std::sort(spans.begin(), spans.end(), [](auto & a, auto & b) { return a.first < b.first; });
    for (size_t i = 1; i < spans.size(); ++i) {
        const auto & prev = *spans[i - 1].second;
        if (prev.offset + prev.n_bytes > spans[i].first)
            throw_error(status::invalid_model, "gguf: {}: tensors {} and {} overlap", path_, prev.name, spans[i].second->name);
    }
    FRUGAL_LOG_DEBUG("gguf: {}: v{}, {} metadata keys, {} tensors, data at {}", path_, version_, kv_.size(),
                     tensors_.size(), data_offset_);
}

value array::at(size_t i) const {
    if (i >= count) throw_error(status::invalid_argument, "gguf: array index {} out of range [0, {})", i, count);
    if (elem_type == value_type::array) return arrays[i];
    const uint64_t offset = elem_type == value_type::string ? string_offsets[i] : i * min_encoded_size(elem_type);
    cursor c(data + offset, byte_size - offset); // checked at parse: reads cannot fail
    return read_value(c, elem_type, "array element", 0);
}

std::string_view array::string_at(size_t i, std::string_view key) const {
    if (elem_type != value_type::string) wrong_type(key, elem_type, "string");
    if (i >= count) throw_error(status::invalid_argument, "gguf: {}: index {} out of range [0, {})", key, i, count);
    uint64_t len;
    std::memcpy(&len, data + string_offsets[i], sizeof len);
    return {reinterpret_cast<const char *>(data + string_offsets[i] + sizeof len), size_t(len)};
}

const value * file::find(std::string_view key) const {
    const auto it = kv_index_.find(key);
    return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
}

int64_t file::get_int(std::string_view key) const {
    const auto v = opt_int(key);
    if (!v) throw_error(status::invalid_model, "gguf: {}: missing required key {}", path_, key);
    return *v;
}

std::optional<int64_t> file::opt_int(std::string_view key) const {
    const value * v = find(key);
    if (!v) return std::nullopt;
    return v->as_int(key);
}

std::optional<double> file::opt_float(std::string_view key) const {
    const value * v = find(key);
    if (!v) return std::nullopt;
    return v->as_float(key);
}

std::optional<bool> file::opt_bool(std::string_view key) const {
    const value * v = find(key);
    if (!v) return std::nullopt;
    return v->as_bool(key);
}

std::string file::get_string(std::string_view key) const {
    const auto v = opt_string(key);
    if (!v) throw_error(status::invalid_model, "gguf: {}: missing required key {}", path_, key);
    return *v;
}

std::optional<std::string> file::opt_string(std::string_view key) const {
    const value * v = find(key);
    if (!v) return std::nullopt;
    return v->as_string(key);
}

const array * file::opt_array(std::string_view key) const {
    const value * v = find(key);
    return v ? &v->as_array(key) : nullptr;
}

const tensor_info * file::find_tensor(std::string_view name) const {
    const auto it = tensor_index_.find(name);
    return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

std::span<const std::byte> file::tensor_bytes(const tensor_info & t) const {
    if (!t.type) {
        const std::string_view name = ggml_type_name(t.ggml_type);
        throw_error(status::unsupported_model, "gguf: {}: tensor {} has ggml type {}{}{}{}, which frugal does not support",
                    path_, t.name, t.ggml_type, name.empty() ? "" : " (", name, name.empty() ? "" : ")");
    }
    return {base_ + data_offset_ + t.offset, size_t(t.n_bytes)};
}

raw_view file::tensor(std::string_view name) const {
    const tensor_info * t = find_tensor(name);
    if (!t) throw_error(status::invalid_model, "gguf: {}: missing tensor {}", path_, name);
    const auto bytes = tensor_bytes(*t);
    return raw_view{*t->type, bytes.data(), t->shape()};
}

} // namespace frugal::gguf
