// The browser app's state and logic, without any drawing: the input image and what the model sees, the
// model, the completion job (an igpt::CompletionSession on pthreads; in the single-threaded build, stepped
// from the frame by poll()), the results, undo, settings.
// main.cpp draws it with Dear ImGui; bridge.cpp lets the page's JavaScript call into it.
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "image.h"
#include "model.h"
#include "session.h"
#include "textures.h"

namespace igpt_web {

// Single-threaded build: milliseconds of completion work per frame (poll), so that frames keep coming.
constexpr double kStepBudgetMs = 12.0;
// ... and kept positions per prefill unit there (a larger model's 128-position chunk could take seconds).
constexpr int32_t kSteppedPrefillChunk = 16;

// Everything the visitor chooses; persisted in the URL and localStorage (as JSON through bridge.cpp).
struct Settings {
    std::string model;           // manifest name; empty = the first one
    int32_t rows = 16;           // rows of the image kept (the crop line)
    int32_t samples = 4;         // 1..16
    float temperature = 1.0f;
    int32_t top_k = 0;           // 0 = off
    uint64_t seed = 1;
    int32_t threads = 0;         // 0 = min(hardware, 8)
    bool overlay = false;        // entropy overlay on the samples
    std::string to_json() const;
    void merge_json(const std::string& json);  // keys present override; bad values are ignored
};

struct ManifestEntry {
    std::string name, file, resolution, trained_on;
    int64_t size = 0;
    double val_bpp = 0;  // validation bits per pixel from the manifest (0: not given)
    bool local = false;  // opened from the visitor's disk: `file` is empty, the page keeps the File object
};

// Model files the browser app opens (downloaded or from disk). The wasm memory is at most 2 GB (web/
// CMakeLists.txt); an int8 iGPT-S (~80 MB) becomes ~310 MB of f32 weights plus ~100 MB of KV cache per sample.
constexpr int64_t kMaxModelFileBytes = int64_t(1) << 30;

// One sample tile: its tokens so far and what the model thought at each generated position.
struct SampleResult {
    std::vector<int32_t> tokens;              // n_ctx
    std::vector<float> entropy;               // n_ctx, bits; valid for kept <= p < filled
    std::vector<igpt::TokenChoice> choices;   // n_ctx * top_n
    int32_t kept = 0, filled = 0;
    uint64_t seed = 0;
    bool dirty = true;                        // texture needs an upload
};

// What undo restores.
struct Snapshot {
    igpt::Image input;
    std::string input_name;
    int32_t rows = 0;
    std::vector<SampleResult> results;
};

enum class ModelState { None, Downloading, Ready, Failed };

struct App {
    Settings settings;
    std::vector<ManifestEntry> manifest;
    bool manifest_loaded = false;

    // model
    std::shared_ptr<const igpt::Model> model;
    std::string model_name;                   // of `model`
    ModelState model_state = ModelState::None;
    std::string model_wanted;                 // being downloaded
    double dl_loaded = 0, dl_total = 0, dl_start = 0;
    std::string model_note;                   // e.g. "cached", "kept in memory only: cache full"

    // input
    igpt::Image input;                        // as opened (any size); empty = none yet
    std::string input_name;
    igpt::Image display;                      // centre-cropped at display resolution
    igpt::Image seen;                         // what the model sees: model resolution, quantised
    std::vector<int32_t> seen_tokens;         // n_ctx palette indices
    std::vector<std::pair<std::string, igpt::Image>> gallery;  // sample images shipped with the app

    // completion
    std::vector<SampleResult> results;
    int32_t top_n = 5;
    std::unique_ptr<igpt::CompletionSession> session;
    std::vector<int32_t> session_slots;       // session sample j -> results[slot]
    std::vector<std::unique_ptr<igpt::CompletionSession>> retiring;  // cancelled, joined once done
    // Warm-up (threaded build): once a model and an image are ready, two short completions that are
    // cancelled after kWarmMs each (the chosen number of samples, then one), so that V8 has compiled the
    // hot kernels with its optimising tier before the visitor's first Complete -- which otherwise runs its
    // first tenths of a second in baseline code while that compiler competes with the compute threads
    // (tiny, batch 1: the first completion 0.22-0.40 s against 0.14-0.24 s for the second without it,
    // 0.17-0.31 s against 0.15-0.27 s with it). Only where the warm-up's KV cache is at most 64 MB.
    std::unique_ptr<igpt::CompletionSession> warm;
    int32_t warm_stage = 0;                   // warm-ups started so far (2: done)
    double warm_until = 0;
    double job_start = 0;
    // The last finished completion's figures (the test hook and tests/web/bench.js read them).
    double last_seconds = 0, last_prefill_seconds = 0, last_decode_tps = 0;
    int32_t last_samples = 0;
    // Single-threaded build (no WebAssembly threads): why, as the page explains it; shown above the panels.
    std::string mode_note;
    // The browser renders WebGL on the CPU: progress is drawn 8 times a second, not at display rate.
    bool software_webgl = false;
    uint64_t frames_drawn = 0;  // frames actually drawn (nothing changed: nothing drawn)
    std::vector<Snapshot> undo;

    // messages: one line, shown in the status bar
    std::string message;
    bool message_is_error = false;

    // view
    Textures tex;
    int32_t inspect_sample = -1, inspect_pos = -1;  // pixel whose top colours are shown
    float compare = 0.0f;                     // 0 = sample only, 1 = original only (left part)
    bool embed = false, autoplay = false;
    bool autoplay_done = false;
    int32_t hardware_threads = 1;
    std::string state_buf;                    // igpt_web_state()'s return value lives here
    std::array<float, 4> seen_rect{};         // last frame's layout (x, y, w, h in CSS pixels), for tests
    std::array<float, 4> open_model_rect{};   // the "Open model file..." button
    std::vector<std::array<float, 4>> tile_rects;

    // --- actions (app.cpp) ---
    void say(const std::string& msg, bool error = false);
    void set_manifest(const std::string& json);
    void request_model(const std::string& name);      // starts a download through JS (or uses the cache)
    void on_model_bytes(const uint8_t* data, size_t size, const std::string& name, const std::string& note);
    void on_model_failed(const std::string& name, const std::string& why);
    // A model file from the visitor's disk (the page keeps the File and reads it when this asks for it):
    // listed as "<file name> (local)" and loaded. False, with the reason in `message`, when it is too large.
    bool add_local_model(const std::string& file_name, double size);
    void open_image_bytes(const uint8_t* data, size_t size, const std::string& name);
    void add_gallery_image(const uint8_t* data, size_t size, const std::string& name);
    void set_input(const igpt::Image& img, const std::string& name, bool push_undo);
    void refresh_seen();                              // recomputes display/seen/tokens
    bool can_complete() const;
    bool fits_in_memory(int32_t n_samples, int32_t kept_tokens, bool quiet = false);  // false: says why
    void complete();                                  // all samples
    void reroll(int32_t slot);                        // one sample, new seed
    void use_as_input(int32_t slot);
    void cancel();
    void warm_up();                                   // from poll(): starts, times and ends the warm-up
    void stop_warm_up();                              // a completion that the visitor asks for goes first
    void undo_last();
    void poll();                                      // once per frame: steps a single-threaded session, then
                                                      // copies progress out of the session
    bool running() const { return session != nullptr; }
    int32_t n_ctx() const { return model ? model->cfg.n_ctx() : 0; }
    int32_t image_h() const { return model ? model->cfg.image_h : 32; }
    int32_t image_w() const { return model ? model->cfg.image_w : 32; }
    int32_t threads() const;
    igpt::Image sample_image(int32_t slot) const;     // dequantised, unfilled pixels grey
    void download_sample(int32_t slot);
    void download_grid();
    std::string file_stem() const;                    // settings in the file name
    std::string state_json() const;                   // the test hook's view of the app
};

double now_ms();

}  // namespace igpt_web
