// Nothing lost (issue 9): a write that fails (disk full on a small tmpfs, a file-size limit, a folder that
// vanished) leaves the previous model / palette / checkpoint byte-identical and no temporary file behind;
// SIGKILL at any moment while the CLI writes never leaves a truncated file at the destination; cancelling a
// completion session at any point is clean (no error, kept pixels intact, valid tokens, restartable).
#include <catch2/catch.hpp>
#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include "backend.h"
#include "error.h"
#include "session.h"
#include "test_util.h"

#if __has_include("checkpoint.h")
#include "checkpoint.h"
#define IGPT_TEST_HAS_CHECKPOINT 1
#endif

using namespace igpt;
namespace fs = std::filesystem;

namespace {

std::vector<uint8_t> bytes_of(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

std::set<std::string> names_in(const std::string& dir) {
    std::set<std::string> s;
    for (const auto& e : fs::directory_iterator(dir)) s.insert(e.path().filename().string());
    return s;
}

// A tmpfs of `kib` KiB mounted on `dir` for the life of the object (needs root with CAP_SYS_ADMIN; ok()
// is false where mounting is not permitted, and the tests that need it are skipped with a warning).
struct SmallTmpfs {
    std::string dir;
    bool mounted = false;
    SmallTmpfs(const std::string& d, int kib) : dir(d) {
        const std::string opts = "size=" + std::to_string(kib) + "k";
        mounted = ::mount("tmpfs", dir.c_str(), "tmpfs", 0, opts.c_str()) == 0;
    }
    ~SmallTmpfs() {
        if (mounted) ::umount2(dir.c_str(), MNT_DETACH);
    }
    bool ok() const { return mounted; }
};

// Fills the file system holding `dir` until fewer than `leave` bytes are free.
void fill_disk(const std::string& dir, size_t leave) {
    std::vector<uint8_t> block(4096, 0xAB);
    FILE* f = std::fopen((dir + "/filler").c_str(), "wb");
    REQUIRE(f);
    std::setvbuf(f, nullptr, _IONBF, 0);
    // Write until the disk is full, then give back room a page at a time.
    while (std::fwrite(block.data(), 1, block.size(), f) == block.size()) {}
    std::fclose(f);
    const uint64_t size = fs::file_size(dir + "/filler");
    const uint64_t cut = std::min<uint64_t>(size, (leave / 4096) * 4096);
    fs::resize_file(dir + "/filler", size - cut);
}

igpt::Model model_of_width(int32_t width, int32_t layers, int32_t size, uint64_t seed) {
    ModelConfig c;
    c.name = "custom";
    c.vocab = 16;
    c.width = width;
    c.layers = layers;
    c.heads = 4;
    c.image_h = c.image_w = size;
    return init_model(c, igpt_test::random_palette(16, seed), seed);
}

std::string quote(const std::string& s) { return "'" + s + "'"; }

// Starts argv with stdout/stderr to /dev/null; returns the pid.
pid_t spawn(const std::vector<std::string>& args) {
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    const pid_t pid = ::fork();
    if (pid == 0) {
        const int null = ::open("/dev/null", O_WRONLY);
        ::dup2(null, 1);
        ::dup2(null, 2);
        ::execv(argv[0], argv.data());
        ::_exit(127);
    }
    return pid;
}

bool has_temp_file(const std::string& dir) {
    for (const auto& n : names_in(dir))
        if (n.find(".tmp.") != std::string::npos) return true;
    return false;
}

void remove_temp_files(const std::string& dir) {
    for (const auto& n : names_in(dir))
        if (n.find(".tmp.") != std::string::npos) fs::remove(dir + "/" + n);
}

}  // namespace

TEST_CASE("disk full while saving leaves the previous model, palette and checkpoint intact", "[hardening]") {
    ::umount2((std::string(IGPT_BINARY_DIR) + "/test_tmp/hardening_tmpfs").c_str(), MNT_DETACH);  // a crashed run's
    const std::string d = igpt_test::temp_dir("hardening_tmpfs");
    SmallTmpfs disk(d, 1024);
    if (!disk.ok()) {
        WARN("cannot mount a tmpfs here (" << std::strerror(errno) << "); the file-size-limit test covers this");
        return;
    }
    const std::string model_path = d + "/m.safetensors", pal_path = d + "/p.safetensors";
    save_model(igpt_test::small_model(1), model_path);  // ~110 KB
    save_palette_file(igpt_test::random_palette(16, 1), pal_path);
    const auto model_before = bytes_of(model_path), pal_before = bytes_of(pal_path);
#ifdef IGPT_TEST_HAS_CHECKPOINT
    const std::string ck_path = d + "/ck.bin";
    train::Checkpoint ck;
    {
        Model m = igpt_test::small_model(2);
        ck.cfg = m.cfg;
        ck.palette = m.palette;
        ck.params = m.params;
        ck.adam_m.assign(m.params.size(), 0.0f);
        ck.adam_v.assign(m.params.size(), 0.0f);
        ck.step = 10;
    }
    train::save_checkpoint(ck_path, ck);  // ~330 KB
    const auto ck_before = bytes_of(ck_path);
#endif
    fill_disk(d, 8 * 1024);

    // A bigger model over the old one: ENOSPC part-way through.
    Model big = model_of_width(64, 2, 8, 3);
    CHECK_THROWS_WITH(save_model(big, model_path), Catch::Contains("No space left") && Catch::Contains("untouched"));
    CHECK(bytes_of(model_path) == model_before);
    // A palette of 65536 colours (196 KB) over the old palette.
    std::vector<uint8_t> rgb(65536 * 3);
    for (size_t i = 0; i < rgb.size(); ++i) rgb[i] = uint8_t(i * 7);
    CHECK_THROWS_WITH(save_palette_file(Palette(rgb), pal_path), Catch::Contains("No space left"));
    CHECK(bytes_of(pal_path) == pal_before);
#ifdef IGPT_TEST_HAS_CHECKPOINT
    ck.step = 11;
    CHECK_THROWS_AS(train::save_checkpoint(ck_path, ck), Error);
    CHECK(bytes_of(ck_path) == ck_before);
    CHECK(train::load_checkpoint(ck_path).step == 10);
#endif
    // The CLI says so in one line and exits 1; the file it would have replaced is still there.
    const auto res = igpt_test::run(igpt_test::cli() + " init -c tiny --size 8 --palette " + quote(pal_path) + " -o " +
                                    quote(model_path));
    INFO(res.output);
    CHECK(res.code == 1);
    CHECK(res.output.find("No space left on device") != std::string::npos);
    CHECK(bytes_of(model_path) == model_before);
    CHECK(load_model(model_path).params == igpt_test::small_model(1).params);
    CHECK(load_palette_file(pal_path).rgb() == igpt_test::random_palette(16, 1).rgb());
    // No temporary file lingers.
    std::set<std::string> want = {"m.safetensors", "p.safetensors", "filler"};
#ifdef IGPT_TEST_HAS_CHECKPOINT
    want.insert("ck.bin");
#endif
    CHECK(names_in(d) == want);
}

TEST_CASE("a write cut short by a file-size limit leaves the previous file intact (CLI)", "[hardening]") {
    // RLIMIT_FSIZE makes write() fail with EFBIG past the limit (SIGXFSZ ignored), like a full disk, and
    // needs no privileges. 64 blocks of 512 bytes: the new files are larger, the old ones smaller.
    const std::string d = igpt_test::temp_dir("hardening_fsize");
    const std::string model_path = d + "/m.safetensors", pal_path = d + "/p.safetensors";
    save_model(igpt_test::small_model(4, false, 8, 1), model_path);
    save_palette_file(igpt_test::random_palette(16, 4), pal_path);
    Image img;
    img.w = img.h = 16;
    for (int i = 0; i < 16 * 16 * 3; ++i) img.rgb.push_back(uint8_t(i * 13));
    write_png(d + "/in.png", img);
    const auto model_before = bytes_of(model_path), pal_before = bytes_of(pal_path);
    REQUIRE(model_before.size() < 32 * 1024);
    const std::string limit = "sh -c \"trap '' XFSZ; ulimit -f 64; exec \\\"\\$0\\\" \\\"\\$@\\\"\" " + igpt_test::cli();

    auto res = igpt_test::run(limit + " init -c tiny --size 8 --palette " + quote(pal_path) + " -o " + quote(model_path));
    INFO(res.output);
    CHECK(res.code == 1);
    CHECK(res.output.find("File too large") != std::string::npos);
    CHECK(bytes_of(model_path) == model_before);

    res = igpt_test::run(limit + " palette " + quote(d + "/in.png") + " -k 20000 --samples 20000 --iterations 1 -o " +
                         quote(pal_path));
    INFO(res.output);
    CHECK(res.code == 1);
    CHECK(res.output.find("File too large") != std::string::npos);
    CHECK(bytes_of(pal_path) == pal_before);
    CHECK(names_in(d) == std::set<std::string>{"m.safetensors", "p.safetensors", "in.png"});
}

TEST_CASE("saving into a folder that vanished fails cleanly", "[hardening]") {
    const std::string d = igpt_test::temp_dir("hardening_vanish");
    fs::create_directories(d + "/sub");
    fs::remove(d + "/sub");
    CHECK_THROWS_WITH(save_model(igpt_test::small_model(1), d + "/sub/m.safetensors"),
                      Catch::Contains("cannot write") && Catch::Contains("No such file"));
    CHECK(names_in(d).empty());
}

TEST_CASE("SIGKILL while the CLI writes a model never leaves a truncated file", "[hardening]") {
    const std::string d = igpt_test::temp_dir("hardening_kill");
    const std::string pal = d + "/p.safetensors", dest = d + "/m.safetensors";
    save_palette_file(igpt_test::random_palette(16, 5), pal);
    // The process writes a ~6 MB model (width 256, 2 layers, 16x16): a write long enough to be caught.
    const std::vector<std::string> cmd = {igpt_test::cli(), "init",     "-c",      "small", "--layers", "2",
                                          "--size",         "16",       "--palette", pal,   "-o",       dest};
    const Model old = igpt_test::small_model(6);
    auto reset = [&] {
        remove_temp_files(d);
        save_model(old, dest);
    };
    reset();
    const auto old_bytes = bytes_of(dest);
    // Reference: one uninterrupted run, for its duration and its output.
    auto t0 = std::chrono::steady_clock::now();
    pid_t pid = spawn(cmd);
    int st = 0;
    ::waitpid(pid, &st, 0);
    REQUIRE((WIFEXITED(st) && WEXITSTATUS(st) == 0));
    const double run_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const auto new_bytes = bytes_of(dest);
    REQUIRE(new_bytes.size() > 4 * 1024 * 1024);

    int old_intact = 0, new_complete = 0, mid_write = 0, trials = 0;
    auto check_dest = [&] {
        const auto now = bytes_of(dest);
        if (now == old_bytes) ++old_intact;
        else if (now == new_bytes) ++new_complete;
        else FAIL("destination is neither the old file nor the complete new one (" << now.size() << " bytes)");
    };
    // 1. Kills spread over the whole run.
    for (int i = 0; i < 6; ++i, ++trials) {
        reset();
        pid = spawn(cmd);
        std::this_thread::sleep_for(std::chrono::duration<double>(run_s * (i + 0.5) / 6));
        ::kill(pid, SIGKILL);
        ::waitpid(pid, &st, 0);
        if (has_temp_file(d)) ++mid_write;
        check_dest();
    }
    // 2. Kills the moment the temporary file appears (the write in progress), until three land mid-write.
    for (int i = 0; i < 20 && mid_write < 3; ++i, ++trials) {
        reset();
        pid = spawn(cmd);
        const auto give_up = std::chrono::steady_clock::now() + std::chrono::duration<double>(10 * run_s + 5);
        while (!has_temp_file(d) && std::chrono::steady_clock::now() < give_up) {
            if (::waitpid(pid, &st, WNOHANG) == pid) break;
            std::this_thread::sleep_for(std::chrono::microseconds(100));
        }
        ::kill(pid, SIGKILL);
        ::waitpid(pid, &st, 0);
        if (has_temp_file(d)) ++mid_write;
        check_dest();
    }
    WARN(trials << " SIGKILLs: " << old_intact << " left the old file, " << new_complete << " the complete new one, "
                << mid_write << " landed mid-write (temporary file left behind, destination intact)");
    CHECK(mid_write >= 1);
    CHECK(old_intact + new_complete == trials);
    remove_temp_files(d);
}

namespace {
std::vector<int32_t> tokens_for(const Model& m, uint64_t seed) {
    Rng r(seed);
    std::vector<int32_t> t(size_t(m.cfg.n_ctx()));
    for (auto& x : t) x = int32_t(r.next() % uint64_t(m.cfg.vocab));
    return t;
}
std::vector<int32_t> all_tokens(const CompletionSession& s) {
    std::vector<int32_t> out;
    for (int i = 0; i < s.n_samples(); ++i) out.insert(out.end(), s.tokens(i), s.tokens(i) + s.n_ctx());
    return out;
}
}  // namespace

TEST_CASE("cancelling a completion at any point is clean and leaves the session reusable", "[hardening][session]") {
    auto m = std::make_shared<const Model>(igpt_test::small_model(7, false, 32, 2));
    const auto tok = tokens_for(*m, 7);
    CompletionParams p;
    p.n_samples = 3;
    p.rows_kept = 3;
    p.threads = 2;
    p.seed = 42;
    std::vector<int32_t> reference;
    {
        CompletionSession s(m);
        s.start(tok, p);
        s.wait();
        reference = all_tokens(s);
    }
    CompletionSession s(m);
    const int32_t T = m->cfg.n_ctx(), kept = p.rows_kept * m->cfg.image_w;
    // Cancel after 0, 1, 2, ... tokens (and right after start, before the worker runs).
    for (int32_t stop_at = kept - 1; stop_at < T; stop_at += 7) {
        s.start(tok, p);
        while (!s.done() && s.filled() < stop_at) std::this_thread::yield();
        s.cancel();
        REQUIRE_NOTHROW(s.wait());
        const int32_t f = s.filled();
        REQUIRE(f >= kept);
        REQUIRE(f <= T);
        for (int32_t i = 0; i < s.n_samples(); ++i) {
            for (int32_t j = 0; j < kept; ++j) REQUIRE(s.tokens(i)[j] == tok[size_t(j)]);  // kept pixels untouched
            for (int32_t j = kept; j < f; ++j) {
                REQUIRE(s.tokens(i)[j] >= 0);
                REQUIRE(s.tokens(i)[j] < m->cfg.vocab);
                // What was produced before the cancel is what an uncancelled run produces.
                REQUIRE(s.tokens(i)[j] == reference[size_t(i) * T + j]);
            }
        }
    }
    // After all those cancels, a full run gives exactly the reference samples.
    s.start(tok, p);
    s.wait();
    CHECK(all_tokens(s) == reference);
    // start() while running cancels the old run; the new one is unaffected by it.
    s.start(tokens_for(*m, 8), p);
    s.start(tok, p);
    s.wait();
    CHECK(all_tokens(s) == reference);
}

TEST_CASE("destroying a running completion session cancels and joins it", "[hardening][session]") {
    auto m = std::make_shared<const Model>(igpt_test::small_model(8, false, 64, 4));
    CompletionParams p;
    p.n_samples = 4;
    p.rows_kept = 0;
    for (int i = 0; i < 10; ++i) {
        const auto t0 = std::chrono::steady_clock::now();
        {
            CompletionSession s(m);
            s.start(tokens_for(*m, uint64_t(i)), p);
            std::this_thread::sleep_for(std::chrono::microseconds(300 * i));
        }  // ~CompletionSession: cancel + join, within about one token
        CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(20));
    }
}

TEST_CASE("image bombs are refused before they take memory", "[hardening]") {
    // 16 KB of PNG that claims 64x64 pixels but inflates to 16 MB (found while fuzzing the decoder: stb grows
    // its zlib buffer without bound; the same trick in 300 KB made it allocate 367 MB).
    const auto zbomb = bytes_of(std::string(IGPT_SOURCE_DIR) + "/tests/data/fuzz/image_decode/zlib_bomb_64x64_16MB.png");
    REQUIRE(zbomb.size() > 1000);
    CHECK_THROWS_WITH(decode_image(zbomb.data(), zbomb.size(), "zbomb.png"),
                      Catch::Contains("decompression bomb") && Catch::Contains("64x64"));
    // A header that promises 12000x12000 pixels: refused by the pixel limit, nothing decoded.
    std::vector<uint8_t> png = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13, 'I', 'H', 'D', 'R'};
    for (uint32_t v : {12000u, 12000u})
        for (int i = 3; i >= 0; --i) png.push_back(uint8_t(v >> (8 * i)));
    png.insert(png.end(), {8, 2, 0, 0, 0, 0, 0, 0, 0});  // 8-bit RGB, CRC (stb does not check it)
    png.insert(png.end(), 64, 0);
    ImageLimits lim;
    CHECK_THROWS_WITH(decode_image(png.data(), png.size(), "big.png", lim), Catch::Contains("larger than the limit"));
    // A file larger than the limit is refused before it is read.
    lim.max_file_bytes = 100;
    CHECK_THROWS_WITH(decode_image(zbomb.data(), zbomb.size(), "zbomb.png", lim), Catch::Contains("too large"));
}

TEST_CASE("a KV cache larger than the memory left is refused with a message, and the backend keeps working", "[hardening]") {
    const igpt::Model m = igpt_test::small_model(3);
    auto backend = igpt::make_cpu_backend(m, 1);
    backend->reset(2);
    // 32 KB per sequence for this shape (2 layers, 64 positions, width 32): 100 million ask for 3.3 TB.
    try {
        backend->reset(100000000);
        FAIL("reset accepted a 3.3 TB cache");
    } catch (const igpt::Error& e) {
        const std::string what = e.what();
        INFO(what);
        CHECK(what.find("KV cache for 100000000 sequences") != std::string::npos);
        CHECK(what.find("is available: use at most") != std::string::npos);
    }
    // The cache it had is still there: a forward pass at the old batch works.
    std::vector<int32_t> tok = {-1, 3, -1, 5};
    std::vector<float> logits(size_t(2) * size_t(m.cfg.vocab));
    backend->forward(tok.data(), 2, 2, 0, logits.data(), false);
    CHECK(std::isfinite(logits[0]));
}
