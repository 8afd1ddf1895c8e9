// Kill-and-resume: run `igpt train` as a subprocess, SIGKILL it mid-run, `--resume` it, and compare its
// metrics log and final weights with an uninterrupted run of the same command: they must be identical.
// The same for SIGTERM (Ctrl-C, `timeout`), which stops the run cleanly: a checkpoint at the step it stopped.
#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>
#include <utility>

#include "image.h"
#include "model.h"

namespace fs = std::filesystem;

#ifdef IGPT_CLI_PATH

namespace {

std::string fresh_dir(const std::string& name) {
    fs::path p = fs::path(IGPT_BINARY_DIR) / "test_train_tmp" / name;
    fs::remove_all(p);
    fs::create_directories(p);
    return p.string();
}

pid_t spawn(const std::vector<std::string>& args, const std::string& log) {
    pid_t pid = fork();
    if (pid == 0) {
        FILE* f = std::freopen(log.c_str(), "w", stderr);
        (void)f;
        std::freopen("/dev/null", "w", stdout);
        std::vector<char*> argv;
        for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
        argv.push_back(nullptr);
        execv(argv[0], argv.data());
        _exit(127);
    }
    return pid;
}

int wait_exit(pid_t pid) {
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

size_t count_lines(const std::string& path) {
    std::ifstream f(path);
    size_t n = 0;
    std::string l;
    while (std::getline(f, l)) n++;
    return n;
}

// The deterministic fields of each metrics line (timings differ between runs by nature).
std::vector<std::string> curve(const std::string& path) {
    std::ifstream f(path);
    std::vector<std::string> out;
    std::string l;
    while (std::getline(f, l)) {
        nlohmann::json j = nlohmann::json::parse(l);
        for (const char* k : {"tokens_per_s", "elapsed_s", "wall_s"}) j.erase(k);
        out.push_back(j.dump());
    }
    return out;
}

// Starts `args` (an `igpt train --out out ...`), waits until its metrics log has `lines` lines (60 s at most),
// sends `sig`, and returns the exit code and the number of metrics lines it left.
std::pair<int, size_t> interrupt_run(const std::vector<std::string>& args, const std::string& out,
                                     const std::string& log, size_t lines, int sig) {
    const pid_t pid = spawn(args, log);
    const auto t0 = std::chrono::steady_clock::now();
    while (count_lines(out + "/metrics.jsonl") < lines && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(60))
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    kill(pid, sig);
    const int code = wait_exit(pid);
    return {code, count_lines(out + "/metrics.jsonl")};
}

std::string read_text(const std::string& path) {
    std::ifstream f(path);
    return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

// 24 small synthetic images in <root>/images.
std::string make_images(const std::string& root) {
    const std::string data = root + "/images";
    fs::create_directories(data);
    for (int i = 0; i < 24; i++) {
        igpt::Image img;
        img.w = img.h = 16;
        img.rgb.resize(16 * 16 * 3);
        for (int p = 0; p < 256; p++)
            for (int c = 0; c < 3; c++) img.rgb[p * 3 + c] = uint8_t((p % 16) * (4 + i % 5) * (c + 1) + (p / 16) * i + 30 * c);
        igpt::write_png(data + "/" + std::to_string(100 + i) + ".png", img);
    }
    return data;
}

std::vector<double> losses(const std::string& metrics) {
    std::vector<double> out;
    for (const std::string& l : curve(metrics)) {
        nlohmann::json j = nlohmann::json::parse(l);
        if (j.contains("train_loss")) out.push_back(j["train_loss"].get<double>());
    }
    return out;
}

}  // namespace

TEST_CASE("train: a run killed (SIGKILL) or stopped (SIGTERM) and resumed reproduces the uninterrupted run",
          "[train][resume]") {
    const std::string root = fresh_dir("resume");
    const std::string data = make_images(root);
    auto cmd = [&](const std::string& out) {
        return std::vector<std::string>{IGPT_CLI_PATH, "train", "--data", data, "--out", out, "--cache-dir",
                                        root + "/cache", "--width", "32", "--layers", "2", "--heads", "2",
                                        "--res", "12", "--vocab", "16", "--crop-scale", "1.34", "--batch", "4",
                                        "--steps", "160", "--warmup", "10", "--lr", "3e-3", "--eval-every", "10",
                                        "--eval-images", "4", "--ckpt-every", "7", "--val-fraction", "0.25",
                                        "--threads", "2", "--seed", "5"};
    };
    // uninterrupted
    const std::string a = root + "/a", b = root + "/b";
    REQUIRE(wait_exit(spawn(cmd(a), root + "/a.log")) == 0);
    // killed mid-run (polling the log; at least one checkpoint exists by then)
    const auto [kill_code, at_kill] = interrupt_run(cmd(b), b, root + "/b.log", 40, SIGKILL);
    CHECK(kill_code == 128 + SIGKILL);
    INFO("killed after " << at_kill << " metrics lines");
    REQUIRE(at_kill >= 40);
    REQUIRE(at_kill < 160);  // really mid-run
    // without --resume the run folder is protected
    CHECK(wait_exit(spawn(cmd(b), root + "/b2.log")) == 1);
    // resume to the end
    std::vector<std::string> r = cmd(b);
    r.push_back("--resume");
    REQUIRE(wait_exit(spawn(r, root + "/b3.log")) == 0);

    const std::vector<std::string> ca = curve(a + "/metrics.jsonl"), cb = curve(b + "/metrics.jsonl");
    REQUIRE(ca.size() == 161);  // 160 steps + the final line
    REQUIRE(cb.size() == ca.size());
    for (size_t i = 0; i < ca.size(); i++) {
        INFO("metrics line " << i);
        CHECK(cb[i] == ca[i]);
    }
    // loss went down: the curve is a real training curve, not a constant
    const auto first = nlohmann::json::parse(ca.front()), last = nlohmann::json::parse(ca[ca.size() - 2]);
    CHECK(last["train_loss"].get<double>() < first["train_loss"].get<double>() - 0.5);
    // the exported weights are bit-identical, and the provenance records the command
    igpt::Model ma = igpt::load_model(a + "/model.safetensors"), mb = igpt::load_model(b + "/model.safetensors");
    CHECK(ma.params == mb.params);
    CHECK(mb.provenance.find("resumed") != std::string::npos);
    CHECK(ma.provenance.find("\"steps\":160") != std::string::npos);

    // SIGTERM: the step in flight finishes, the checkpoint is written at it, the exit is a one-line error
    const std::string c = root + "/c";
    const auto [term_code, at_term] = interrupt_run(cmd(c), c, root + "/c.log", 30, SIGTERM);
    CHECK(term_code == 1);
    INFO("stopped after " << at_term << " metrics lines");
    REQUIRE(at_term >= 30);
    REQUIRE(at_term < 160);
    CHECK(read_text(root + "/c.log").find("stopped at step " + std::to_string(at_term) + " of 160; checkpoint saved") !=
          std::string::npos);
    CHECK_FALSE(fs::exists(c + "/model.safetensors"));
    std::vector<std::string> rc = cmd(c);
    rc.push_back("--resume");
    REQUIRE(wait_exit(spawn(rc, root + "/c2.log")) == 0);
    const std::vector<std::string> cc = curve(c + "/metrics.jsonl");
    REQUIRE(cc.size() == ca.size());
    for (size_t i = 0; i < ca.size(); i++) {
        INFO("metrics line " << i << " (SIGTERM run)");
        CHECK(cc[i] == ca[i]);
    }
    CHECK(igpt::load_model(c + "/model.safetensors").params == ma.params);
}

TEST_CASE("train --init: a run starts from a model file's weights, shape and palette", "[train][resume]") {
    const std::string root = fresh_dir("init");
    const std::string data = make_images(root);
    const std::string cli = IGPT_CLI_PATH;
    const std::vector<std::string> common = {"--data", data, "--cache-dir", root + "/cache", "--crop-scale", "1",
                                             "--eval-every", "1000", "--eval-images", "4", "--val-fraction", "0.25",
                                             "--threads", "2", "--seed", "5"};
    auto with = [&](std::vector<std::string> a) {
        a.insert(a.begin(), {cli, "train"});
        a.insert(a.end(), common.begin(), common.end());
        return a;
    };
    // a first model, trained from random weights
    const std::string a = root + "/a";
    REQUIRE(wait_exit(spawn(with({"--out", a, "--width", "32", "--layers", "2", "--heads", "2", "--res", "12",
                                  "--vocab", "16", "--batch", "4", "--steps", "120", "--warmup", "10", "--lr", "3e-3"}),
                            root + "/a.log")) == 0);
    const std::vector<double> la = losses(a + "/metrics.jsonl");
    REQUIRE(la.size() == 120);
    double tail = 0;
    for (size_t i = la.size() - 20; i < la.size(); i++) tail += la[i] / 20;
    // continued from it, with a learning rate too small to move it: the first losses are the trained model's
    const std::string b = root + "/b";
    REQUIRE(wait_exit(spawn(with({"--out", b, "--init", a + "/model.safetensors", "--batch", "4", "--steps", "5",
                                  "--warmup", "1", "--lr", "1e-9"}),
                            root + "/b.log")) == 0);
    const std::vector<double> lb = losses(b + "/metrics.jsonl");
    REQUIRE(lb.size() == 5);
    INFO("first model: first loss " << la.front() << ", mean of its last 20 " << tail << "; continued: " << lb.front());
    CHECK(lb.front() < la.front() - 0.5);
    CHECK(std::abs(lb.front() - tail) < 0.25);
    const igpt::Model ma = igpt::load_model(a + "/model.safetensors"), mb = igpt::load_model(b + "/model.safetensors");
    CHECK(mb.cfg.width == 32);
    CHECK(mb.cfg.image_h == 12);
    CHECK(mb.palette.rgb() == ma.palette.rgb());
    double moved = 0;
    for (size_t i = 0; i < ma.params.size(); i++) moved = std::max(moved, double(std::abs(ma.params[i] - mb.params[i])));
    CHECK(moved < 1e-6);  // lr 1e-9: the weights are the first model's
    CHECK(mb.provenance.find("\"init\":\"" + a + "/model.safetensors\"") != std::string::npos);
    // the shape comes from the model: shape flags are refused, with one line
    CHECK(wait_exit(spawn(with({"--out", root + "/c", "--init", a + "/model.safetensors", "--width", "64"}),
                          root + "/c.log")) == 1);
    // and so does the palette: another one is refused
    igpt::Model other = igpt::load_model(a + "/model.safetensors");
    std::vector<uint8_t> rgb = other.palette.rgb();
    rgb[0] ^= 0x40;
    other.palette = igpt::Palette(rgb);
    igpt::save_model(other, root + "/other.safetensors");
    CHECK(wait_exit(spawn(with({"--out", root + "/d", "--init", a + "/model.safetensors", "--palette",
                                root + "/other.safetensors"}),
                          root + "/d.log")) == 1);
    CHECK(read_text(root + "/d.log").find("different palettes") != std::string::npos);
}

#endif
