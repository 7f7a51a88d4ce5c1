// download_test.cpp - frugal::download against tests/tools/http_server.py on 127.0.0.1 (no internet).
// The SHA-256 oracle is coreutils' sha256sum, never the library's own hashing.
#include <doctest/doctest.h>

#include "common/test_support.hpp"

#ifdef FRUGAL_HAVE_DOWNLOAD

#include <cerrno>
#include <csignal>
#include <cstring>
#include <fstream>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include "runtime/download.hpp"
#include "util/error.hpp"

extern char ** environ;

namespace {

namespace fs = std::filesystem;
namespace dl = frugal::download;
using frugal::status;

constexpr size_t k_payload_size = (3 << 20) + 12345; // not a multiple of any buffer size

// python3 tests/tools/http_server.py serving `dir`; killed and reaped when the guard dies. The
// server also exits on its own after 120 s, or when this process dies (its stdin pipe closes).
class test_server {
public:
    explicit test_server(const fs::path & dir) {
        int out[2], in[2];
        REQUIRE(::pipe2(out, O_CLOEXEC) == 0);
        REQUIRE(::pipe2(in, O_CLOEXEC) == 0);
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_adddup2(&actions, in[0], STDIN_FILENO);
        posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
        const std::string script = FRUGAL_TEST_SOURCE_DIR "/tools/http_server.py";
        std::vector<std::string> args = {"python3", script, "--dir", dir.string(), "--timeout", "120",
                                         "--exit-on-stdin-eof"};
        std::vector<char *> argv;
        for (auto & a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        const int rc = ::posix_spawnp(&pid_, "python3", &actions, nullptr, argv.data(), environ);
        posix_spawn_file_actions_destroy(&actions);
        ::close(in[0]);
        ::close(out[1]);
        stdin_ = in[1];
        stdout_ = out[0];
        if (rc != 0) {
            pid_ = -1;
            REQUIRE_MESSAGE(rc == ENOENT, "posix_spawnp python3: " << std::strerror(rc));
            return;
        }
        port_ = read_port();
        REQUIRE_MESSAGE(port_ > 0, "http_server.py did not print its port");
    }
    test_server(const test_server &) = delete;
    test_server & operator=(const test_server &) = delete;
    ~test_server() {
        if (pid_ > 0) {
            ::kill(pid_, SIGTERM);
            ::waitpid(pid_, nullptr, 0);
        }
        ::close(stdin_);
        ::close(stdout_);
    }

    bool running() const { return pid_ > 0; }
    std::string url(std::string_view route) const { return fmt::format("http://127.0.0.1:{}/{}", port_, route); }
    int port() const { return port_; }

private:
    // Reads "PORT <n>\n", waiting at most 10 s.
    int read_port() {
        std::string line;
        while (line.find('\n') == std::string::npos) {
            pollfd p{stdout_, POLLIN, 0};
            if (::poll(&p, 1, 10000) <= 0) return 0;
            char buf[64];
            const ssize_t n = ::read(stdout_, buf, sizeof(buf));
            if (n <= 0) return 0;
            line.append(buf, size_t(n));
        }
        return line.starts_with("PORT ") ? std::atoi(line.c_str() + 5) : 0;
    }

    pid_t pid_ = -1;
    int stdin_ = -1;
    int stdout_ = -1;
    int port_ = 0;
};

// Sets (or with nullopt unsets) an environment variable for one scope.
class env_guard {
public:
    env_guard(const char * name, std::optional<std::string> value) : name_(name) {
        if (const char * old = std::getenv(name)) old_ = old;
        if (value) ::setenv(name, value->c_str(), 1);
        else ::unsetenv(name);
    }
    env_guard(const env_guard &) = delete;
    env_guard & operator=(const env_guard &) = delete;
    ~env_guard() {
        if (old_) ::setenv(name_, old_->c_str(), 1);
        else ::unsetenv(name_);
    }

private:
    const char * name_;
    std::optional<std::string> old_;
};

std::vector<char> read_bytes(const fs::path & p) {
    std::ifstream f(p, std::ios::binary);
    REQUIRE_MESSAGE(f, "cannot open " << p);
    return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

void write_bytes(const fs::path & p, const std::vector<char> & data) {
    std::ofstream f(p, std::ios::binary | std::ios::trunc);
    f.write(data.data(), std::streamsize(data.size()));
    REQUIRE_MESSAGE(f, "cannot write " << p);
}

std::string sha256sum(const fs::path & p) {
    const std::string cmd = "sha256sum -- '" + p.string() + "'";
    std::unique_ptr<FILE, decltype(&::pclose)> pipe(::popen(cmd.c_str(), "r"), &::pclose);
    REQUIRE(pipe);
    char buf[65] = {};
    const size_t n = std::fread(buf, 1, 64, pipe.get());
    REQUIRE_MESSAGE(n == 64, "sha256sum failed on " << p);
    return std::string(buf, 64);
}

std::vector<char> garbage(size_t n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::vector<char> v(n);
    for (auto & c : v) c = char(rng());
    return v;
}

// One case's folders: srv/ (served, holds payload.bin) and out/ (downloads), freshly emptied.
struct fixture {
    fs::path srv, out;
    std::vector<char> payload;
    std::string sha; // of payload, by sha256sum

    explicit fixture(const std::string & name) {
        const fs::path root = frugal::test::scratch_dir("download/" + name);
        fs::remove_all(root);
        srv = root / "srv";
        out = root / "out";
        fs::create_directories(srv);
        fs::create_directories(out);
        payload = garbage(k_payload_size, uint32_t(std::hash<std::string>{}(name)));
        write_bytes(srv / "payload.bin", payload);
        sha = sha256sum(srv / "payload.bin");
    }
    fs::path dest() const { return out / "payload.bin"; }
    fs::path part() const { return out / "payload.bin.part"; }
};

template <class F>
std::optional<frugal::error> error_of(F && f) {
    try {
        f();
    } catch (const frugal::error & e) {
        return e;
    }
    return std::nullopt;
}

using frugal::test::contains;

} // namespace

#define START_SERVER(name, dir)                                     \
    test_server name(dir);                                          \
    if (!name.running()) FRUGAL_SKIP("python3 not found on PATH")

TEST_CASE("fetch downloads the file and reports the sha256 sha256sum computes" * doctest::timeout(60)) {
    fixture f("full");
    START_SERVER(server, f.srv);
    uint64_t last_done = 0, last_total = 0;
    bool monotonic = true;
    dl::options o;
    o.url = server.url("files/payload.bin");
    o.dest = f.dest();
    o.progress = [&](uint64_t done, uint64_t total) {
        monotonic = monotonic && done >= last_done;
        last_done = done;
        last_total = total;
        return true;
    };
    const dl::result r = dl::fetch(o);
    CHECK(r.path == f.dest());
    CHECK(r.bytes == k_payload_size);
    CHECK(r.sha256 == f.sha);
    CHECK_FALSE(r.resumed);
    CHECK_FALSE(r.already_present);
    CHECK(read_bytes(f.dest()) == f.payload);
    CHECK_FALSE(fs::exists(f.part()));
    CHECK(monotonic);
    CHECK(last_done == k_payload_size);
    CHECK(last_total == k_payload_size);

    SUBCASE("a present dest is not fetched again") {
        // A url that would fail proves no request is made.
        o.url = server.url("404/payload.bin");
        o.sha256 = f.sha;
        const dl::result again = dl::fetch(o);
        CHECK(again.already_present);
        CHECK(again.sha256 == f.sha);
        CHECK(again.bytes == k_payload_size);
        o.sha256.clear();
        CHECK(dl::fetch(o).already_present);
    }
    SUBCASE("a present dest with the wrong sha256 is replaced") {
        write_bytes(f.dest(), garbage(1000, 3));
        o.sha256 = f.sha;
        const dl::result again = dl::fetch(o);
        CHECK_FALSE(again.already_present);
        CHECK(read_bytes(f.dest()) == f.payload);
    }
}

TEST_CASE("fetch resumes a .part left by dropped connections" * doctest::timeout(60)) {
    fixture f("resume");
    START_SERVER(server, f.srv);
    dl::options o;
    o.dest = f.dest();
    o.url = server.url("drop/1048576/payload.bin");
    auto e = error_of([&] { dl::fetch(o); });
    REQUIRE(e);
    CHECK(e->code() == status::io);
    CHECK(contains(e->what(), o.url));
    CHECK(fs::file_size(f.part()) == 1048576);
    CHECK_FALSE(fs::exists(f.dest()));

    // The drop applies to the resumed (206) body too, so the .part grows by another MiB.
    e = error_of([&] { dl::fetch(o); });
    REQUIRE(e);
    CHECK(fs::file_size(f.part()) == 2 * 1048576);

    o.url = server.url("files/payload.bin");
    o.sha256 = f.sha;
    const dl::result r = dl::fetch(o);
    CHECK(r.resumed);
    CHECK(r.sha256 == f.sha);
    CHECK(r.bytes == k_payload_size);
    CHECK(read_bytes(f.dest()) == f.payload);
    CHECK_FALSE(fs::exists(f.part()));
}

TEST_CASE("fetch starts over when the server cannot continue the .part" * doctest::timeout(60)) {
    fixture f("restart");
    START_SERVER(server, f.srv);
    dl::options o;
    o.dest = f.dest();
    o.sha256 = f.sha;
    dl::result r;

    SUBCASE("server ignores range (200)") {
        // A wrong prefix: only a real restart from zero can produce the right file.
        write_bytes(f.part(), garbage(1 << 20, 1));
        o.url = server.url("norange/payload.bin");
        r = dl::fetch(o);
        CHECK_FALSE(r.resumed);
    }
    SUBCASE("206 with a content-range that does not start at the offset") {
        write_bytes(f.part(), garbage(100000, 2));
        o.url = server.url("badrange/payload.bin");
        r = dl::fetch(o);
        CHECK_FALSE(r.resumed);
    }
    SUBCASE(".part longer than the file (416)") {
        std::vector<char> longer = f.payload;
        longer.resize(longer.size() + 1000, 'x');
        write_bytes(f.part(), longer);
        o.url = server.url("files/payload.bin");
        r = dl::fetch(o);
        CHECK_FALSE(r.resumed);
    }
    SUBCASE(".part already complete (416) is verified and kept") {
        write_bytes(f.part(), f.payload);
        o.url = server.url("files/payload.bin");
        r = dl::fetch(o);
        CHECK(r.resumed);
    }
    CHECK(r.sha256 == f.sha);
    CHECK(r.bytes == k_payload_size);
    CHECK(read_bytes(f.dest()) == f.payload);
    CHECK_FALSE(fs::exists(f.part()));
}

TEST_CASE("fetch rejects a sha256 mismatch and leaves no file" * doctest::timeout(60)) {
    fixture f("mismatch");
    START_SERVER(server, f.srv);
    dl::options o;
    o.url = server.url("files/payload.bin");
    o.dest = f.dest();
    o.sha256 = std::string(64, '0');
    auto e = error_of([&] { dl::fetch(o); });
    REQUIRE(e);
    CHECK(e->code() == status::io);
    CHECK(contains(e->what(), std::string(64, '0')));
    CHECK(contains(e->what(), f.sha));
    CHECK_FALSE(fs::exists(f.dest()));
    CHECK_FALSE(fs::exists(f.part()));

    o.sha256 = "not-a-hash";
    e = error_of([&] { dl::fetch(o); });
    REQUIRE(e);
    CHECK(e->code() == status::invalid_argument);
    CHECK(contains(e->what(), "not-a-hash"));
}

TEST_CASE("a sha256 announced by the server (X-Linked-ETag) is checked" * doctest::timeout(60)) {
    fixture f("linked");
    START_SERVER(server, f.srv);
    dl::options o;
    o.dest = f.dest();
    o.url = server.url("files/payload.bin");
    CHECK_FALSE(dl::fetch(o).verified); // nothing known: downloaded, not verified
    fs::remove(f.dest());

    o.url = server.url("linked/" + f.sha + "/payload.bin");
    const dl::result r = dl::fetch(o);
    CHECK(r.verified);
    CHECK(r.sha256 == f.sha);
    fs::remove(f.dest());

    const std::string wrong(64, 'a');
    o.url = server.url("linked/" + wrong + "/payload.bin");
    auto e = error_of([&] { dl::fetch(o); });
    REQUIRE(e);
    CHECK(e->code() == status::io);
    CHECK(contains(e->what(), wrong));
    CHECK(contains(e->what(), "announced by the server"));
    CHECK_FALSE(fs::exists(f.dest()));

    // A value that is not a sha256 (a git blob id) is ignored.
    o.url = server.url("linked/0123abcd/payload.bin");
    const dl::result g = dl::fetch(o);
    CHECK_FALSE(g.verified);
    CHECK(g.sha256 == f.sha);
}

TEST_CASE("fetch reports http 404 with the status and url" * doctest::timeout(60)) {
    fixture f("404");
    START_SERVER(server, f.srv);
    dl::options o;
    o.url = server.url("files/missing.bin");
    o.dest = f.dest();
    auto e = error_of([&] { dl::fetch(o); });
    REQUIRE(e);
    CHECK(e->code() == status::io);
    CHECK(contains(e->what(), "404"));
    CHECK(contains(e->what(), o.url));
    CHECK(std::string_view(e->what()).starts_with("download: "));
    CHECK_FALSE(fs::exists(f.dest()));
    CHECK_FALSE(fs::exists(f.part()));
}

TEST_CASE("fetch follows redirects" * doctest::timeout(60)) {
    fixture f("redirect");
    START_SERVER(server, f.srv);
    dl::options o;
    o.url = server.url("redirect/payload.bin");
    o.dest = f.dest();
    const dl::result r = dl::fetch(o);
    CHECK(r.sha256 == f.sha);
    CHECK(read_bytes(f.dest()) == f.payload);
}

TEST_CASE("cancel from progress keeps the .part for a later resume" * doctest::timeout(60)) {
    fixture f("cancel");
    START_SERVER(server, f.srv);
    dl::options o;
    o.url = server.url("files/payload.bin");
    o.dest = f.dest();
    o.progress = [](uint64_t done, uint64_t) { return done < 256 * 1024; };
    auto e = error_of([&] { dl::fetch(o); });
    REQUIRE(e);
    CHECK(e->code() == status::cancelled);
    REQUIRE(fs::exists(f.part()));
    const uint64_t kept = fs::file_size(f.part());
    CHECK(kept >= 256 * 1024);
    CHECK(kept < k_payload_size);
    CHECK_FALSE(fs::exists(f.dest()));

    o.progress = nullptr;
    const dl::result r = dl::fetch(o);
    CHECK(r.resumed);
    CHECK(r.sha256 == f.sha);
    CHECK(read_bytes(f.dest()) == f.payload);
}

TEST_CASE("the bearer token goes to the url's host only" * doctest::timeout(60)) {
    fixture f("auth");
    START_SERVER(server, f.srv);
    dl::options o;
    o.dest = f.dest();
    o.url = server.url("auth/payload.bin");

    SUBCASE("explicit token is sent") {
        o.bearer_token = "secret";
        CHECK(dl::fetch(o).sha256 == f.sha);
    }
    SUBCASE("HF_TOKEN is not sent to other hosts") {
        env_guard token("HF_TOKEN", "secret");
        auto e = error_of([&] { dl::fetch(o); });
        REQUIRE(e);
        CHECK(contains(e->what(), "401"));
    }
    SUBCASE("a redirect to another host name does not carry the token") {
        o.url = server.url("redirect-host/payload.bin");
        o.bearer_token = "secret";
        auto e = error_of([&] { dl::fetch(o); });
        REQUIRE(e);
        CHECK(e->code() == status::io);
        CHECK(contains(e->what(), "401"));
    }
}

TEST_CASE("an empty dest downloads into cache_dir under the url's file name" * doctest::timeout(60)) {
    fixture f("cache");
    START_SERVER(server, f.srv);
    const fs::path cache = f.out / "cache";
    env_guard env("FRUGAL_CACHE_DIR", cache.string());
    dl::options o;
    o.url = server.url("files/payload.bin?download=true");
    const dl::result r = dl::fetch(o);
    CHECK(r.path == cache / "payload.bin");
    CHECK(read_bytes(cache / "payload.bin") == f.payload);

    o.url = server.url("files/");
    auto e = error_of([&] { dl::fetch(o); });
    REQUIRE(e);
    CHECK(e->code() == status::invalid_argument);
}

TEST_CASE("fetch does not create a missing dest directory" * doctest::timeout(60)) {
    fixture f("nodir");
    dl::options o;
    o.url = "http://127.0.0.1:1/payload.bin"; // never contacted
    o.dest = f.out / "missing" / "payload.bin";
    auto e = error_of([&] { dl::fetch(o); });
    REQUIRE(e);
    CHECK(e->code() == status::io);
    CHECK(contains(e->what(), (f.out / "missing").string()));
    CHECK_FALSE(fs::exists(f.out / "missing"));
}

TEST_CASE("resolve_url expands hf:// and accepts only http and https" * doctest::timeout(60)) {
    CHECK(dl::resolve_url("hf://unsloth/DeepSeek-V3-GGUF/DeepSeek-V3-Q2_K.gguf") ==
          "https://huggingface.co/unsloth/DeepSeek-V3-GGUF/resolve/main/DeepSeek-V3-Q2_K.gguf");
    CHECK(dl::resolve_url("hf://org/repo/Q4_K_M/model-00001-of-00002.gguf@v1.0") ==
          "https://huggingface.co/org/repo/resolve/v1.0/Q4_K_M/model-00001-of-00002.gguf");
    CHECK(dl::resolve_url("hf://org/repo/m.gguf@refs/pr/1") ==
          "https://huggingface.co/org/repo/resolve/refs%2Fpr%2F1/m.gguf");
    CHECK(dl::resolve_url("hf://org/repo/m+1.gguf") == "https://huggingface.co/org/repo/resolve/main/m%2B1.gguf");
    CHECK(dl::resolve_url("https://example.com/a/b.gguf?x=1") == "https://example.com/a/b.gguf?x=1");
    CHECK(dl::resolve_url("HTTP://127.0.0.1:8080/b.gguf") == "HTTP://127.0.0.1:8080/b.gguf");

    for (const char * bad : {"hf://org/repo", "hf://org//m.gguf", "hf://org/repo/../m.gguf", "hf://org/repo/m.gguf@",
                             "ftp://example.com/m.gguf", "file:///etc/passwd", "example.com/m.gguf", "https:///m.gguf",
                             "https://example.com/a b.gguf", "https://example.com/a\nb.gguf", ""}) {
        CAPTURE(bad);
        auto e = error_of([&] { dl::resolve_url(bad); });
        REQUIRE(e);
        CHECK(e->code() == status::invalid_argument);
        CHECK(std::string_view(e->what()).starts_with("download: "));
    }
}

TEST_CASE("cache_dir follows FRUGAL_CACHE_DIR, then XDG_CACHE_HOME, then HOME" * doctest::timeout(60)) {
    const fs::path root = frugal::test::scratch_dir("download/cache_dir");
    fs::remove_all(root);
    env_guard frugal_dir("FRUGAL_CACHE_DIR", (root / "frugal-cache").string());
    env_guard xdg("XDG_CACHE_HOME", (root / "xdg").string());
    env_guard home("HOME", (root / "home").string());
    CHECK(dl::cache_dir() == root / "frugal-cache");
    CHECK(fs::is_directory(root / "frugal-cache"));
    {
        env_guard unset("FRUGAL_CACHE_DIR", std::nullopt);
        CHECK(dl::cache_dir() == root / "xdg" / "frugal");
        CHECK(fs::is_directory(root / "xdg" / "frugal"));
        {
            env_guard relative("XDG_CACHE_HOME", "relative/xdg"); // ignored, as the XDG spec says
            CHECK(dl::cache_dir() == root / "home" / ".cache" / "frugal");
        }
        env_guard unset_xdg("XDG_CACHE_HOME", std::nullopt);
        CHECK(dl::cache_dir() == root / "home" / ".cache" / "frugal");
        CHECK(fs::is_directory(root / "home" / ".cache" / "frugal"));
        env_guard unset_home("HOME", std::nullopt);
        auto e = error_of([] { dl::cache_dir(); });
        REQUIRE(e);
        CHECK(e->code() == status::io);
    }
}

TEST_CASE("format_progress draws bar, sizes, rate and eta" * doctest::timeout(60)) {
    constexpr uint64_t mib = 1 << 20;
    const uint64_t total = uint64_t(1.8 * 1024) * mib; // 1843 MiB
    // 812.3 MiB of 1843 MiB = 44%, at 41.2 MiB/s over 19.7 s: 1030.7 MiB left = 25 s.
    const uint64_t done = uint64_t(812.3 * mib);
    CHECK(dl::format_progress(done, total, 812.3 / 41.2) ==
          "[=====>      ]  44%  812.3 MiB / 1.8 GiB  41.2 MiB/s  ETA 0:25");
    CHECK(dl::format_progress(0, 1000, 0) == "[>           ]   0%  0 B / 1000 B  -- B/s  ETA --:--");
    CHECK(dl::format_progress(1000, 1000, 2) == "[============] 100%  1000 B / 1000 B  500 B/s  ETA 0:00");
    CHECK(dl::format_progress(1024, 0, 1) == "1.0 KiB  1.0 KiB/s");
    // 1 GiB of 400 GiB at 1 MiB/s: 399 GiB left = 408576 s = 113:29:36.
    CHECK(dl::format_progress(1024 * mib, 400 * 1024 * mib, 1024) ==
          "[>           ]   0%  1.0 GiB / 400.0 GiB  1.0 MiB/s  ETA 113:29:36");
    CHECK(dl::format_progress(1023 * 1024 + 1000, 0, 0) == "1.0 MiB  -- B/s"); // no "1024.0 KiB"
}

#else

TEST_CASE("download is not built" * doctest::timeout(5)) {
    FRUGAL_SKIP("built with FRUGAL_DOWNLOAD=OFF");
}

#endif
