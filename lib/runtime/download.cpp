// download.cpp - libcurl transfer into dest.part, resume by Range request, SHA-256 via OpenSSL EVP.
#include "runtime/download.hpp"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <system_error>
#include <vector>

#include <curl/curl.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/error.hpp"
#include "util/log.hpp"
#include "util/text.hpp"

namespace frugal::download {
namespace fs = std::filesystem;
namespace {

constexpr long k_max_redirects = 10;
constexpr long k_stall_seconds = 120;     // abort when under 1 byte/s for this long (dead peer)
constexpr long k_curl_buffer = 512 << 10; // fewer callbacks and write syscalls on multi-GB files
constexpr size_t k_read_chunk = 1 << 20;

bool starts_with_ci(std::string_view s, std::string_view prefix) {
    return s.size() >= prefix.size() && to_lower(s.substr(0, prefix.size())) == prefix;
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n'))
        s.remove_suffix(1);
    return s;
}

std::optional<uint64_t> parse_u64(std::string_view s) {
    uint64_t v = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || end != s.data() + s.size() || s.empty()) return std::nullopt;
    return v;
}

// Percent-encodes everything outside RFC 3986 "unreserved" (so '/' in a revision becomes %2F).
std::string url_encode(std::string_view s) {
    std::string out;
    for (unsigned char c : s) {
        if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') out += char(c);
        else out += fmt::format("%{:02X}", c);
    }
    return out;
}

std::vector<std::string_view> split(std::string_view s, char sep) {
    std::vector<std::string_view> parts;
    for (size_t start = 0;;) {
        const size_t end = s.find(sep, start);
        parts.push_back(s.substr(start, end == std::string_view::npos ? end : end - start));
        if (end == std::string_view::npos) return parts;
        start = end + 1;
    }
}

// The part after "scheme://" and before the path, query or fragment.
std::string_view authority(std::string_view url) {
    const size_t start = url.find("://");
    if (start == std::string_view::npos) return {};
    std::string_view rest = url.substr(start + 3);
    return rest.substr(0, rest.find_first_of("/?#"));
}

std::string host_of(std::string_view url) {
    std::string_view auth = authority(url);
    if (const size_t at = auth.rfind('@'); at != std::string_view::npos) auth.remove_prefix(at + 1);
    if (auth.starts_with('[')) return to_lower(auth.substr(0, auth.find(']') + 1));
    return to_lower(auth.substr(0, auth.find(':')));
}

// Last path segment of the url, used as the file name in the cache; never a path.
std::string derived_name(std::string_view url) {
    std::string_view rest = url.substr(url.find("://") + 3);
    rest = rest.substr(0, rest.find_first_of("?#"));
    const size_t slash = rest.rfind('/');
    const std::string_view name = slash == std::string_view::npos ? std::string_view{} : rest.substr(slash + 1);
    if (name.empty() || name == "." || name == "..")
        throw_error(status::invalid_argument, "download: cannot derive a file name from {}; set dest", url);
    return std::string(name);
}

std::string hf_url(std::string_view spec, std::string_view original) {
    std::string_view revision = "main";
    if (const size_t at = spec.rfind('@'); at != std::string_view::npos) {
        revision = spec.substr(at + 1);
        spec = spec.substr(0, at);
    }
    const auto parts = split(spec, '/');
    const bool bad_part = std::any_of(parts.begin(), parts.end(),
                                      [](std::string_view p) { return p.empty() || p == "." || p == ".."; });
    if (parts.size() < 3 || bad_part || revision.empty())
        throw_error(status::invalid_argument, "download: bad hf url {}: want hf://OWNER/REPO/FILE[@REVISION]",
                    original);
    std::string url = fmt::format("https://huggingface.co/{}/{}/resolve/{}", url_encode(parts[0]),
                                  url_encode(parts[1]), url_encode(revision));
    for (size_t i = 2; i < parts.size(); ++i) {
        url += '/';
        url += url_encode(parts[i]);
    }
    return url;
}

std::string expected_sha256(std::string_view s) {
    const bool hex = std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isxdigit(c); });
    if (!s.empty() && (s.size() != 64 || !hex))
        throw_error(status::invalid_argument, "download: bad sha256 '{}': want 64 hex digits", s);
    return to_lower(s);
}

class sha256 {
public:
    sha256() : ctx_(EVP_MD_CTX_new(), &EVP_MD_CTX_free) {
        if (!ctx_) throw_error(status::out_of_memory, "download: cannot allocate a sha256 context");
        reset();
    }
    void reset() {
        if (EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr) != 1)
            throw_error(status::internal, "download: sha256 init failed");
    }
    void update(const void * data, size_t n) {
        if (EVP_DigestUpdate(ctx_.get(), data, n) != 1) throw_error(status::internal, "download: sha256 update failed");
    }
    std::string hex() {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int len = 0;
        if (EVP_DigestFinal_ex(ctx_.get(), md, &len) != 1)
            throw_error(status::internal, "download: sha256 final failed");
        std::string out;
        for (unsigned int i = 0; i < len; ++i) out += fmt::format("{:02x}", md[i]);
        return out;
    }

private:
    std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx_;
};

// Feeds the first `limit` bytes of the file at path into h; returns how many were read.
uint64_t hash_file(const fs::path & path, sha256 & h, uint64_t limit = UINT64_MAX) {
    std::unique_ptr<std::FILE, decltype(&std::fclose)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
    if (!f) throw_error(status::io, "download: cannot open {}: {}", path.string(), std::strerror(errno));
    std::vector<char> buf(k_read_chunk);
    uint64_t done = 0;
    while (done < limit) {
        const size_t want = size_t(std::min<uint64_t>(buf.size(), limit - done));
        const size_t got = std::fread(buf.data(), 1, want, f.get());
        h.update(buf.data(), got);
        done += got;
        if (got < want) {
            if (std::ferror(f.get())) throw_error(status::io, "download: cannot read {}", path.string());
            break;
        }
    }
    return done;
}

// dest.part, opened for appending and locked so two pulls of one file cannot interleave.
class part_file {
public:
    explicit part_file(fs::path path) : path_(std::move(path)) {
        fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd_ < 0) throw_error(status::io, "download: cannot open {}: {}", path_.string(), std::strerror(errno));
        if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
            ::close(fd_);
            throw_error(status::io, "download: {} is in use by another download", path_.string());
        }
    }
    part_file(const part_file &) = delete;
    part_file & operator=(const part_file &) = delete;
    ~part_file() { ::close(fd_); }

    const fs::path & path() const { return path_; }

    uint64_t size() const {
        struct stat st {};
        if (::fstat(fd_, &st) != 0)
            throw_error(status::io, "download: cannot stat {}: {}", path_.string(), std::strerror(errno));
        return uint64_t(st.st_size);
    }
    void truncate() {
        if (::ftruncate(fd_, 0) != 0)
            throw_error(status::io, "download: cannot truncate {}: {}", path_.string(), std::strerror(errno));
    }
    // False with errno set on failure; called from curl's callback, so no throw.
    bool write(const char * p, size_t n) {
        while (n > 0) {
            const ssize_t w = ::write(fd_, p, n);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) return false;
            p += w;
            n -= size_t(w);
        }
        return true;
    }
    void sync() {
        if (::fsync(fd_) != 0)
            throw_error(status::io, "download: cannot sync {}: {}", path_.string(), std::strerror(errno));
    }
    void remove() {
        std::error_code ec;
        fs::remove(path_, ec);
    }

private:
    fs::path path_;
    int fd_ = -1;
};

void global_init() {
    static std::once_flag once;
    std::call_once(once, [] {
        const CURLcode rc = curl_global_init(CURL_GLOBAL_DEFAULT);
        if (rc != CURLE_OK) throw_error(status::internal, "download: curl_global_init: {}", curl_easy_strerror(rc));
    });
}

// One HTTP exchange. The callbacks run inside curl (C code), so they record problems here and
// return an abort value instead of throwing.
struct transfer {
    CURL * curl = nullptr;
    const std::string * url = nullptr;
    part_file * part = nullptr;
    sha256 * hash = nullptr;
    const std::function<bool(uint64_t, uint64_t)> * progress = nullptr;
    uint64_t offset = 0;  // Range start asked for; the hash already covers these bytes
    uint64_t written = 0; // bytes in the .part
    uint64_t total = 0;   // final size, 0 while unknown
    std::string content_range; // of the latest response's header block
    std::string linked_sha256; // X-Linked-ETag of any response on the way (the Hub's LFS hash)
    bool started = false;
    bool resumed = false;
    bool restart = false;  // the answer cannot continue the .part: retry from zero
    bool complete = false; // 416 proved the .part already holds the whole file
    bool cancelled = false;
    std::string failure;
    std::exception_ptr exception;
};

// Content-Range "bytes START-END/TOTAL" (TOTAL may be "*") or, on 416, "bytes */TOTAL".
struct content_range {
    std::optional<uint64_t> start, end, total;
};

content_range parse_content_range(std::string_view v) {
    content_range r;
    if (!starts_with_ci(v, "bytes ")) return r;
    v = trim(v.substr(6));
    const size_t slash = v.find('/');
    if (slash == std::string_view::npos) return r;
    r.total = parse_u64(v.substr(slash + 1));
    const std::string_view span = v.substr(0, slash);
    if (const size_t dash = span.find('-'); dash != std::string_view::npos) {
        r.start = parse_u64(span.substr(0, dash));
        r.end = parse_u64(span.substr(dash + 1));
    }
    return r;
}

// Decides from the final response's status and headers whether its body continues the .part,
// replaces it, or must not be written. Returns false to stop the transfer.
bool begin_body(transfer & t) {
    t.started = true;
    long code = 0;
    curl_easy_getinfo(t.curl, CURLINFO_RESPONSE_CODE, &code);
    curl_off_t length = -1;
    curl_easy_getinfo(t.curl, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &length);

    if (code == 206 && t.offset > 0) {
        const content_range r = parse_content_range(t.content_range);
        const bool open_ended = r.end && (!r.total || *r.end + 1 == *r.total);
        if (r.start != t.offset || !open_ended) {
            FRUGAL_LOG_WARN("download: {} answered content-range '{}' to a resume at {}; restarting from 0",
                            *t.url, t.content_range, t.offset);
            t.restart = true;
            return false;
        }
        t.resumed = true;
        t.total = r.total ? *r.total : length >= 0 ? t.offset + uint64_t(length) : 0;
        return true;
    }
    if (code == 200) {
        if (t.offset > 0) {
            FRUGAL_LOG_INFO("download: {} ignored the range request; restarting from 0", *t.url);
            t.part->truncate();
            t.hash->reset();
            t.written = 0;
            t.offset = 0;
        }
        t.total = length >= 0 ? uint64_t(length) : 0;
        return true;
    }
    if (code == 416 && t.offset > 0) {
        // Nothing lies past the .part: it is either the whole file or longer than it.
        const content_range r = parse_content_range(t.content_range);
        t.complete = r.total == t.offset;
        t.restart = !t.complete;
        return false;
    }
    if (code >= 400) t.failure = fmt::format("download: http {} for {}", code, *t.url);
    else t.failure = fmt::format("download: unexpected http status {} for {}", code, *t.url);
    return false;
}

// The Hugging Face Hub answers a resolve URL of an LFS file with a redirect carrying
// X-Linked-ETag: "<sha256 of the file>"; any other value (a git blob id, a weak tag) is ignored.
std::string linked_etag_sha256(std::string_view v) {
    if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
    if (v.size() != 64) return {};
    std::string out;
    for (const char ch : v) {
        if (!std::isxdigit(static_cast<unsigned char>(ch))) return {};
        out += char(std::tolower(static_cast<unsigned char>(ch)));
    }
    return out;
}

size_t on_header(char * data, size_t size, size_t n, void * user) {
    auto & t = *static_cast<transfer *>(user);
    const std::string_view line(data, size * n);
    try {
        if (line.starts_with("HTTP/")) t.content_range.clear(); // a new response (after a redirect)
        else if (starts_with_ci(line, "content-range:")) t.content_range = trim(line.substr(14));
        else if (starts_with_ci(line, "x-linked-etag:")) t.linked_sha256 = linked_etag_sha256(trim(line.substr(14)));
    } catch (...) {
        t.exception = std::current_exception();
        return 0;
    }
    return size * n;
}

// Calls the user's progress; false stops the transfer (cancelled, or the callback threw).
bool report(transfer & t) {
    if (!*t.progress) return true;
    try {
        t.cancelled = !(*t.progress)(t.written, t.total);
    } catch (...) {
        t.exception = std::current_exception();
    }
    return !t.cancelled && !t.exception;
}

size_t on_body(char * data, size_t size, size_t n, void * user) {
    auto & t = *static_cast<transfer *>(user);
    try {
        if (!t.started && !begin_body(t)) return 0;
        if (!t.part->write(data, size * n)) {
            t.failure = fmt::format("download: cannot write {}: {}", t.part->path().string(), std::strerror(errno));
            return 0;
        }
        t.hash->update(data, size * n);
        t.written += size * n;
    } catch (...) {
        t.exception = std::current_exception();
        return 0;
    }
    // Reported per chunk: curl's own progress hook may run only once for a fast local transfer.
    return report(t) ? size * n : 0;
}

// curl calls this about once a second even when no data arrives, so a stalled transfer can
// still be cancelled.
int on_progress(void * user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
    return report(*static_cast<transfer *>(user)) ? 0 : 1;
}

void set_protocols(CURL * curl) {
#if LIBCURL_VERSION_NUM >= 0x075500 // 7.85 deprecated the bitmask options
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#else
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS, long(CURLPROTO_HTTP | CURLPROTO_HTTPS));
    curl_easy_setopt(curl, CURLOPT_REDIR_PROTOCOLS, long(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
}

} // namespace

fs::path cache_dir() {
    auto env = [](const char * name) -> std::string {
        const char * v = std::getenv(name);
        return v ? v : "";
    };
    fs::path dir;
    if (const std::string v = env("FRUGAL_CACHE_DIR"); !v.empty()) dir = v;
    // The XDG spec says to ignore a relative XDG_CACHE_HOME.
    else if (const std::string x = env("XDG_CACHE_HOME"); !x.empty() && fs::path(x).is_absolute())
        dir = fs::path(x) / "frugal";
    else if (const std::string h = env("HOME"); !h.empty()) dir = fs::path(h) / ".cache" / "frugal";
    else throw_error(status::io, "download: no cache directory: set FRUGAL_CACHE_DIR or HOME");
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) throw_error(status::io, "download: cannot create cache directory {}: {}", dir.string(), ec.message());
    return dir;
}

std::string resolve_url(std::string_view url) {
    const bool bad_char = std::any_of(url.begin(), url.end(), [](unsigned char c) { return c <= 0x20 || c == 0x7f; });
    if (bad_char) throw_error(status::invalid_argument, "download: bad url '{}': whitespace or control character", url);
    if (starts_with_ci(url, "hf://")) return hf_url(url.substr(5), url);
    if (!starts_with_ci(url, "http://") && !starts_with_ci(url, "https://"))
        throw_error(status::invalid_argument, "download: unsupported url {}: want http://, https:// or hf://", url);
    if (host_of(url).empty()) throw_error(status::invalid_argument, "download: bad url {}: no host", url);
    return std::string(url);
}

result fetch(const options & opt) {
    const std::string url = resolve_url(opt.url);
    const std::string want_sha = expected_sha256(opt.sha256);
    const fs::path dest = opt.dest.empty() ? cache_dir() / derived_name(url) : opt.dest;

    std::error_code ec;
    if (fs::is_directory(dest, ec))
        throw_error(status::invalid_argument, "download: dest {} is a directory", dest.string());
    if (fs::exists(dest, ec)) {
        sha256 h;
        const uint64_t bytes = hash_file(dest, h);
        std::string got = h.hex();
        if (want_sha.empty() || got == want_sha) {
            FRUGAL_LOG_INFO("download: {} already present", dest.string());
            return {dest, bytes, std::move(got), false, true};
        }
        FRUGAL_LOG_WARN("download: {} has sha256 {}, want {}; downloading again", dest.string(), got, want_sha);
    }

    global_init();
    part_file part(fs::path(dest) += ".part");
    sha256 hash;
    uint64_t offset = part.size();
    if (offset > 0) {
        // Hashed before the request so the connection never idles while a large prefix is read.
        FRUGAL_LOG_INFO("download: resuming {} at {} bytes", url, offset);
        if (hash_file(part.path(), hash, offset) != offset)
            throw_error(status::io, "download: {} shrank while being read", part.path().string());
    }

    std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> curl(curl_easy_init(), &curl_easy_cleanup);
    if (!curl) throw_error(status::internal, "download: curl_easy_init failed");
    std::string token = opt.bearer_token;
    if (token.empty() && host_of(url) == "huggingface.co") {
        const char * env = std::getenv("HF_TOKEN");
        token = env ? env : "";
    }

    char errbuf[CURL_ERROR_SIZE] = {};
    transfer t;
    try {
        for (;;) {
            t = transfer{};
            t.curl = curl.get();
            t.url = &url;
            t.part = &part;
            t.hash = &hash;
            t.progress = &opt.progress;
            t.offset = t.written = offset;
            errbuf[0] = '\0';
            CURL * c = curl.get();
            curl_easy_reset(c);
            curl_easy_setopt(c, CURLOPT_URL, url.c_str());
            set_protocols(c);
            curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
            curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
            curl_easy_setopt(c, CURLOPT_MAXREDIRS, k_max_redirects);
            curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, opt.connect_timeout_s);
            curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
            curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, k_stall_seconds);
            curl_easy_setopt(c, CURLOPT_BUFFERSIZE, k_curl_buffer);
            curl_easy_setopt(c, CURLOPT_USERAGENT, "frugal");
            curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
            curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, &on_header);
            curl_easy_setopt(c, CURLOPT_HEADERDATA, &t);
            curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &on_body);
            curl_easy_setopt(c, CURLOPT_WRITEDATA, &t);
            if (opt.progress) {
                curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, &on_progress);
                curl_easy_setopt(c, CURLOPT_XFERINFODATA, &t);
                curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
            }
            if (!token.empty()) {
                // curl sends bearer auth to the original host only, so a CDN redirect never sees it.
                curl_easy_setopt(c, CURLOPT_HTTPAUTH, CURLAUTH_BEARER);
                curl_easy_setopt(c, CURLOPT_XOAUTH2_BEARER, token.c_str());
            }
            if (offset > 0) curl_easy_setopt(c, CURLOPT_RANGE, fmt::format("{}-", offset).c_str()); // copied

            const CURLcode rc = curl_easy_perform(c);
            if (rc == CURLE_OK && !t.started) begin_body(t); // empty body: no write callback ran
            if (t.exception) std::rethrow_exception(t.exception);
            if (t.cancelled) throw_error(status::cancelled, "download: cancelled {} at {} bytes", url, t.written);
            if (t.restart) {
                part.truncate();
                hash.reset();
                offset = 0;
                continue;
            }
            if (!t.failure.empty()) throw error(status::io, t.failure);
            if (rc != CURLE_OK && !t.complete)
                throw_error(status::io, "download: {} failed after {} bytes: {}", url, t.written,
                            errbuf[0] ? errbuf : curl_easy_strerror(rc));
            break;
        }
        if (t.total > 0 && t.written != t.total)
            throw_error(status::io, "download: {} ended at {} bytes of {}", url, t.written, t.total);
    } catch (...) {
        if (t.written == 0) part.remove(); // an empty .part is no use for a later resume
        throw;
    }

    part.sync();
    std::string got = hash.hex();
    // A checksum the caller gave wins; otherwise the one the server announced is checked.
    const std::string & check_sha = want_sha.empty() ? t.linked_sha256 : want_sha;
    if (!check_sha.empty() && got != check_sha) {
        part.remove();
        throw_error(status::io, "download: sha256 mismatch for {}: expected {}{}, got {}", url, check_sha,
                    want_sha.empty() ? " (announced by the server)" : "", got);
    }
    fs::rename(part.path(), dest, ec);
    if (ec)
        throw_error(status::io, "download: cannot rename {} to {}: {}", part.path().string(), dest.string(),
                    ec.message());
    FRUGAL_LOG_INFO("download: {} -> {} ({} bytes, sha256 {})", url, dest.string(), t.written, got);
    return {dest, t.written, std::move(got), t.resumed || t.complete, false, !check_sha.empty()};
}

std::string format_progress(uint64_t done, uint64_t total, double seconds) {
    auto human = [](double v) {
        static constexpr const char * units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
        size_t u = 0;
        // 1023.95 so that rounding never prints "1024.0 KiB".
        for (; v >= 1023.95 && u + 1 < std::size(units); ++u) v /= 1024;
        return u == 0 ? fmt::format("{} B", uint64_t(v)) : fmt::format("{:.1f} {}", v, units[u]);
    };
    const double rate = seconds > 0 ? double(done) / seconds : 0;
    const std::string speed = seconds > 0 ? human(rate) + "/s" : "-- B/s";
    if (total == 0) return fmt::format("{}  {}", human(double(done)), speed);

    constexpr size_t width = 12;
    const double frac = std::min(1.0, double(done) / double(total));
    const size_t filled = size_t(frac * width);
    std::string bar(filled, '=');
    if (filled < width) bar += '>' + std::string(width - filled - 1, ' ');

    std::string eta = "--:--";
    if (done >= total) eta = "0:00";
    else if (rate > 0) {
        const uint64_t s = uint64_t((double(total - done)) / rate + 0.5);
        eta = s >= 3600 ? fmt::format("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
                        : fmt::format("{}:{:02}", s / 60, s % 60);
    }
    return fmt::format("[{}] {:3}%  {} / {}  {}  ETA {}", bar, int(frac * 100), human(double(done)),
                       human(double(total)), speed, eta);
}

} // namespace frugal::download
