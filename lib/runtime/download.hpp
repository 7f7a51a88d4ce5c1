// download.hpp - `frugal pull`: fetch a model file over http(s) with libcurl.
// The file grows in dest + ".part" and is renamed to dest only once complete and verified, so
// dest never holds a partial file. An interrupted or cancelled download resumes from the .part
// with an HTTP Range request. SHA-256 is computed while streaming (over the resumed prefix too).
// Failures throw frugal::error: status::invalid_argument (bad url, sha256 or dest),
// status::io (network, http >= 400, short body, checksum mismatch, disk), status::cancelled.
// The .part is locked: a second concurrent fetch of the same dest fails with status::io.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>

namespace frugal::download {

struct options {
    // https://..., http://..., or hf://OWNER/REPO/PATH/FILE.gguf[@REVISION] (see resolve_url).
    std::string url;
    // Final file path; empty = cache_dir() / the url's last path segment. Its directory must exist.
    std::filesystem::path dest;
    // Expected SHA-256, 64 hex digits; empty = not checked (still computed and reported).
    std::string sha256;
    // Sent as "Authorization: Bearer ..." to the url's host only (never to redirect targets).
    // Empty = $HF_TOKEN when the host is huggingface.co, else none.
    std::string bearer_token;
    // Called as bytes arrive, and about once a second while stalled: done = bytes in the file
    // so far, total = final size (0 while unknown). Return false to cancel (status::cancelled,
    // the .part is kept for a later resume). Runs on the calling thread; exceptions propagate.
    std::function<bool(uint64_t done, uint64_t total)> progress;
    long connect_timeout_s = 30;
};

struct result {
    std::filesystem::path path; // == dest (or the derived cache path)
    uint64_t bytes = 0;         // size of the file at path
    std::string sha256;         // lowercase hex of the file at path
    bool resumed = false;       // continued from an existing .part
    bool already_present = false; // dest existed (and matched sha256 when given); no network used
    bool verified = false;      // checked against a known sha256: the caller's, or the one the
                                // server announced (Hugging Face's X-Linked-ETag for LFS files)
};

// $FRUGAL_CACHE_DIR, else $XDG_CACHE_HOME/frugal, else $HOME/.cache/frugal; created if missing.
std::filesystem::path cache_dir();

// hf://OWNER/REPO/PATH[@REVISION] -> https://huggingface.co/OWNER/REPO/resolve/REVISION/PATH
// (REVISION defaults to main); http:// and https:// pass through unchanged. Any other scheme,
// a missing host, whitespace or control characters throw status::invalid_argument.
std::string resolve_url(std::string_view url_or_hf);

result fetch(const options & opt);

// One progress line for a terminal, e.g.
// "[=====>      ]  45%  812.3 MiB / 1.8 GiB  41.2 MiB/s  ETA 0:25".
// Rate is done / seconds; with total == 0 (unknown) only "812.3 MiB  41.2 MiB/s" is shown.
std::string format_progress(uint64_t done, uint64_t total, double seconds);

} // namespace frugal::download
