// The app's logic: opening images and models, running completions (on pthreads, or stepped from the frame
// in the single-threaded build), results, undo, export.
// Every failure ends as one line in App::message; the app keeps the image, model and settings it had.
#include "app.h"

#include <emscripten.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <malloc.h>
#include <new>
#include <nlohmann/json.hpp>
#include <thread>

#include "bridge.h"
#include "error.h"

namespace igpt_web {

using nlohmann::json;

double now_ms() { return emscripten_get_now(); }

namespace {
constexpr int32_t kDisplaySize = 256;  // resolution of the centre crop shown as "original"
constexpr size_t kUndoDepth = 20;

igpt::ImageLimits browser_image_limits() {
    igpt::ImageLimits l;
    l.max_file_bytes = 64ll << 20;
    l.max_pixels = 40ll << 20;
    return l;
}
}  // namespace

// ---- settings ---------------------------------------------------------------------------------------------

std::string Settings::to_json() const {
    return json{{"model", model}, {"rows", rows}, {"samples", samples}, {"temperature", temperature},
                {"top_k", top_k}, {"seed", seed}, {"threads", threads}, {"overlay", overlay}}
        .dump();
}

void Settings::merge_json(const std::string& text) {
    json j = json::parse(text, nullptr, false);
    if (!j.is_object()) return;
    auto num = [&](const char* key, double lo, double hi, auto& out) {
        auto it = j.find(key);
        if (it == j.end()) return;
        double v;
        if (it->is_number()) v = it->get<double>();
        else if (it->is_string()) {
            char* end = nullptr;
            const std::string s = it->get<std::string>();
            v = std::strtod(s.c_str(), &end);
            if (s.empty() || *end) return;
        } else return;
        if (std::isfinite(v) && v >= lo && v <= hi) out = static_cast<std::decay_t<decltype(out)>>(v);
    };
    if (j.contains("model") && j["model"].is_string()) model = j["model"].get<std::string>();
    num("rows", 0, 4096, rows);
    num("samples", 1, 16, samples);
    num("temperature", 0, 10, temperature);
    num("top_k", 0, 65536, top_k);
    num("seed", 0, 9007199254740991.0, seed);
    num("threads", 0, 64, threads);
    if (j.contains("overlay")) {
        const json& o = j["overlay"];
        overlay = o.is_boolean() ? o.get<bool>() : (o.is_string() && (o == "1" || o == "true"));
    }
}

// ---- messages, manifest, model ----------------------------------------------------------------------------

void App::say(const std::string& msg, bool error) {
    message = msg;
    message_is_error = error;
    std::printf("%s%s\n", error ? "error: " : "", msg.c_str());
}

void App::set_manifest(const std::string& text) {
    json j = json::parse(text, nullptr, false);
    const json* list = j.is_array() ? &j : (j.is_object() && j.contains("models") ? &j["models"] : nullptr);
    if (!list || !list->is_array()) {
        say("model list (manifest.json) is not valid JSON", true);
        return;
    }
    // The visitor's own model files stay listed (after the site's models) when the list is replaced.
    std::vector<ManifestEntry> local;
    for (auto& e : manifest)
        if (e.local) local.push_back(std::move(e));
    manifest.clear();
    for (const json& m : *list) {
        if (!m.is_object() || !m.contains("file") || !m["file"].is_string()) continue;
        ManifestEntry e;
        e.file = m["file"].get<std::string>();
        e.name = m.value("name", e.file);
        if (m.contains("resolution"))
            e.resolution = m["resolution"].is_string() ? m["resolution"].get<std::string>() : m["resolution"].dump();
        e.trained_on = m.value("trained_on", m.value("trained-on", std::string()));
        e.size = m.value("size", int64_t(0));
        if (m.contains("val_bpp") && m["val_bpp"].is_number()) e.val_bpp = m["val_bpp"].get<double>();
        manifest.push_back(e);
    }
    const bool site_models = !manifest.empty();
    manifest.insert(manifest.end(), local.begin(), local.end());
    manifest_loaded = true;
    if (!site_models) {
        say("no models listed in assets/models/manifest.json", true);
        return;
    }
    auto it = std::find_if(manifest.begin(), manifest.end(), [&](auto& e) { return e.name == settings.model; });
    request_model(it != manifest.end() ? it->name : manifest.front().name);
}

void App::request_model(const std::string& name) {
    auto it = std::find_if(manifest.begin(), manifest.end(), [&](auto& e) { return e.name == name; });
    if (it == manifest.end()) return;
    if (model_state == ModelState::Downloading && model_wanted == name) return;
    model_wanted = name;
    model_state = ModelState::Downloading;
    dl_loaded = 0;
    dl_total = double(it->size);
    dl_start = now_ms();
    if (it->local) js_load_local_model(name.c_str());
    else js_load_model(("assets/models/" + it->file).c_str(), name.c_str(), double(it->size));
}

bool App::add_local_model(const std::string& file_name, double size) {
    if (size > double(kMaxModelFileBytes)) {
        char buf[256];
        std::snprintf(buf, sizeof buf,
                      "cannot open %s: %.2f GB is too large; the browser app opens model files up to %.0f GB "
                      "(WebAssembly memory is at most 2 GB)",
                      file_name.c_str(), size / double(1 << 30), double(kMaxModelFileBytes) / double(1 << 30));
        say(buf, true);
        return false;
    }
    const std::string name = file_name + " (local)";
    auto it = std::find_if(manifest.begin(), manifest.end(), [&](auto& e) { return e.name == name; });
    if (it == manifest.end()) {
        manifest.emplace_back();
        it = std::prev(manifest.end());
    } else if (!it->local) {
        say("cannot open " + file_name + ": a listed model already has the name '" + name + "'", true);
        return false;
    }
    it->name = name;
    it->file.clear();
    it->local = true;
    it->size = int64_t(size);
    it->trained_on = "a file on this computer (" + file_name + ")";
    model_wanted.clear();  // a file chosen again (same name, maybe new contents) is read again
    request_model(name);
    return true;
}

void App::on_model_bytes(const uint8_t* data, size_t size, const std::string& name, const std::string& note) {
    if (name != model_wanted) return;  // a newer choice replaced this download
    try {
        igpt::ModelLimits limits;
        limits.max_file_bytes = kMaxModelFileBytes;
        auto m = std::make_shared<igpt::Model>(igpt::load_model_from_memory(data, size, name, limits));
        if (running()) cancel();
        model = std::move(m);
        model_name = name;
        model_state = ModelState::Ready;
        model_note = note;
        auto it = std::find_if(manifest.begin(), manifest.end(), [&](auto& e) { return e.name == name; });
        if (it != manifest.end() && it->local)  // not remembered in the URL: a reload cannot reopen the file
            it->resolution = std::to_string(model->cfg.image_w) + "x" + std::to_string(model->cfg.image_h);
        else
            settings.model = name;
        settings.rows = std::clamp(settings.rows, 0, model->cfg.image_h);
        results.clear();
        tex.resize_tiles(0);
        inspect_sample = inspect_pos = -1;
        refresh_seen();
        const auto& c = model->cfg;
        char buf[160];
        std::snprintf(buf, sizeof buf, "model '%s' ready: %dx%d, %d colours, width %d, %d layers%s%s", name.c_str(),
                      c.image_w, c.image_h, c.vocab, c.width, c.layers, note.empty() ? "" : " -- ", note.c_str());
        say(buf);
    } catch (const std::bad_alloc&) {
        on_model_failed(name, "model '" + name + "' does not fit in this browser's memory");
    } catch (const std::exception& e) {
        on_model_failed(name, e.what());
    }
}

void App::on_model_failed(const std::string& name, const std::string& why) {
    if (name != model_wanted) return;
    model_state = model ? ModelState::Ready : ModelState::Failed;
    model_wanted = model_name;
    if (name != model_name)  // a local file that does not load leaves the list again
        manifest.erase(std::remove_if(manifest.begin(), manifest.end(),
                                      [&](auto& e) { return e.local && e.name == name; }),
                       manifest.end());
    say("cannot load model: " + why + (model ? " (keeping '" + model_name + "')" : ""), true);
}

// ---- images -----------------------------------------------------------------------------------------------

void App::open_image_bytes(const uint8_t* data, size_t size, const std::string& name) {
    try {
        igpt::Image img = igpt::decode_image(data, size, name, browser_image_limits());
        set_input(img, name, true);
        say("opened " + name + " (" + std::to_string(img.w) + "x" + std::to_string(img.h) + ")");
    } catch (const std::bad_alloc&) {
        say(name + ": image too large for this browser's memory", true);
    } catch (const std::exception& e) {
        say(e.what(), true);
    }
}

void App::add_gallery_image(const uint8_t* data, size_t size, const std::string& name) {
    try {
        igpt::Image img = igpt::decode_image(data, size, name, browser_image_limits());
        igpt::Image thumb = igpt::prepare_image(img, 48, 48);
        gallery.emplace_back(name, std::move(img));
        tex.gallery.emplace_back();
        tex.gallery.back().upload(thumb.rgb.data(), thumb.w, thumb.h);
        if (input.rgb.empty() && gallery.size() == 1) set_input(gallery[0].second, name, false);
    } catch (const std::exception& e) {
        say(e.what(), true);
    }
}

void App::set_input(const igpt::Image& img, const std::string& name, bool push_undo) {
    if (push_undo && !input.rgb.empty()) {
        undo.push_back({input, input_name, settings.rows, results});
        if (undo.size() > kUndoDepth) undo.erase(undo.begin());
    }
    if (running()) cancel();
    input = img;
    input_name = name;
    results.clear();
    inspect_sample = inspect_pos = -1;
    refresh_seen();
}

void App::refresh_seen() {
    if (input.rgb.empty()) return;
    const int32_t H = image_h(), W = image_w();
    // Display crop at the model's aspect ratio, kDisplaySize on the long side.
    const int32_t dh = H >= W ? kDisplaySize : kDisplaySize * H / W, dw = W >= H ? kDisplaySize : kDisplaySize * W / H;
    display = igpt::prepare_image(input, dh, dw);
    tex.display.upload(display.rgb.data(), display.w, display.h);
    seen = igpt::prepare_image(input, H, W);
    if (model) {
        seen_tokens = model->palette.quantize(seen.rgb);
        seen.rgb = model->palette.dequantize(seen_tokens);
    } else {
        seen_tokens.clear();
    }
    tex.seen.upload(seen.rgb.data(), seen.w, seen.h);
}

// ---- completion -------------------------------------------------------------------------------------------

int32_t App::threads() const {
    if (!igpt::kHaveThreads) return 1;
    return settings.threads > 0 ? std::min(settings.threads, 8) : std::clamp(hardware_threads, 1, 8);
}

bool App::can_complete() const { return model && !seen_tokens.empty() && !running(); }

namespace {
// One sample's KV cache: keys and values of every layer at every position, as floats.
double kv_cache_bytes(const igpt::ModelConfig& c) { return 2.0 * c.layers * c.n_ctx() * c.width * sizeof(float); }
}  // namespace

// A completion of n samples needs a KV cache per sample (kv_cache_bytes) plus the activations of the first
// forward pass (all kept tokens of every sample). Checked against what is left of the wasm memory (at most
// 2 GB) so that too many samples of a large model give a message, not a failure.
bool App::fits_in_memory(int32_t n, int32_t kept_tokens, bool quiet) {
    const auto& c = model->cfg;
    const double f = sizeof(float), C = c.width;
    const double per_sample = kv_cache_bytes(c) + std::max(1, kept_tokens) * (8.0 * C + c.hidden() + c.vocab) * f;
    const double free_bytes = js_memory_max() - double(mallinfo().uordblks) - double(32 << 20);  // some slack
    if (per_sample * n <= free_bytes) return true;
    if (quiet) return false;
    const int32_t fit = int32_t(std::max(0.0, free_bytes / per_sample));
    char buf[240];
    std::snprintf(buf, sizeof buf, "%d sample%s of '%s' need about %.0f MB; the browser has %.0f MB left of its %.0f MB: %s",
                  n, n > 1 ? "s" : "", model_name.c_str(), per_sample * n / 1048576.0,
                  std::max(0.0, free_bytes) / 1048576.0, js_memory_max() / 1048576.0,
                  fit > 0 ? ("use " + std::to_string(fit) + " sample" + (fit > 1 ? "s" : "") + " or fewer").c_str()
                          : "choose a smaller model");
    say(buf, true);
    return false;
}

namespace {
SampleResult blank_result(const std::vector<int32_t>& seen_tokens, int32_t kept, int32_t top_n) {
    SampleResult r;
    r.tokens.assign(seen_tokens.size(), 0);
    std::copy_n(seen_tokens.begin(), kept, r.tokens.begin());
    r.entropy.assign(seen_tokens.size(), 0.0f);
    r.choices.assign(seen_tokens.size() * size_t(top_n), igpt::TokenChoice{});
    r.kept = r.filled = kept;
    return r;
}

// On pthreads where the build has them; else stepped by App::poll() once per frame.
std::unique_ptr<igpt::CompletionSession> start_session(std::shared_ptr<const igpt::Model> model,
                                                       const std::vector<int32_t>& tokens, igpt::CompletionParams p) {
    auto s = std::make_unique<igpt::CompletionSession>(std::move(model));
    if (igpt::kHaveThreads) {
        s->start(tokens, p);
    } else {
        p.prefill_chunk = kSteppedPrefillChunk;
        s->start_stepped(tokens, p);
    }
    return s;
}
}  // namespace

void App::complete() {
    if (!can_complete()) return;
    stop_warm_up();
    try {
        const int32_t n = std::clamp(settings.samples, 1, 16);
        igpt::CompletionParams p;
        p.n_samples = n;
        p.rows_kept = std::clamp(settings.rows, 0, image_h());
        p.sampler.temperature = settings.temperature;
        p.sampler.top_k = settings.top_k;
        p.seed = settings.seed;
        p.threads = threads();
        p.top_n = top_n;
        if (!fits_in_memory(n, p.rows_kept * image_w())) return;
        auto s = start_session(model, seen_tokens, p);
        if (!results.empty()) {
            undo.push_back({input, input_name, settings.rows, results});
            if (undo.size() > kUndoDepth) undo.erase(undo.begin());
        }
        results.assign(size_t(n), SampleResult{});
        session_slots.clear();
        for (int32_t i = 0; i < n; ++i) {
            results[size_t(i)] = blank_result(seen_tokens, s->kept(), top_n);
            results[size_t(i)].seed = settings.seed;
            session_slots.push_back(i);
        }
        inspect_sample = inspect_pos = -1;
        session = std::move(s);
        job_start = now_ms();
        say("completing " + std::to_string(n) + " sample" + (n > 1 ? "s" : "") + " on " + std::to_string(p.threads) +
            " thread" + (p.threads > 1 ? "s" : "") + (igpt::kHaveThreads ? "" : " (single-threaded mode)"));
    } catch (const std::bad_alloc&) {
        say("not enough memory in this browser for " + std::to_string(settings.samples) + " samples of '" +
            model_name + "'; use fewer samples", true);
    } catch (const std::exception& e) {
        say(e.what(), true);
    }
}

void App::reroll(int32_t slot) {
    if (!can_complete() || slot < 0 || slot >= int32_t(results.size())) return;
    stop_warm_up();
    try {
        igpt::CompletionParams p;
        p.n_samples = 1;
        p.rows_kept = results[size_t(slot)].kept / image_w();
        p.sampler.temperature = settings.temperature;
        p.sampler.top_k = settings.top_k;
        // A new seed derived from the time, so every re-roll differs; kept in the result for the PNG name.
        p.seed = uint64_t(now_ms() * 1000.0) ^ (uint64_t(slot) << 48);
        p.threads = threads();
        p.top_n = top_n;
        if (!fits_in_memory(1, p.rows_kept * image_w())) return;
        auto s = start_session(model, seen_tokens, p);
        undo.push_back({input, input_name, settings.rows, results});
        results[size_t(slot)] = blank_result(seen_tokens, s->kept(), top_n);
        results[size_t(slot)].seed = p.seed;
        session_slots = {slot};
        session = std::move(s);
        job_start = now_ms();
        say("re-rolling sample " + std::to_string(slot + 1));
    } catch (const std::bad_alloc&) {
        say("not enough memory in this browser to re-roll a sample of '" + model_name + "'", true);
    } catch (const std::exception& e) {
        say(e.what(), true);
    }
}

void App::cancel() {
    if (!session) return;
    session->cancel();
    session->step(0);  // a stepped session ends here (done at once); a threaded one ignores this
    // Never join on the browser's main thread while the worker may still need it (thread start-up is
    // proxied through the main thread): park the session and destroy it once it reports done().
    retiring.push_back(std::move(session));
    session_slots.clear();
    say("cancelled");
}

void App::warm_up() {
    constexpr double kWarmMs = 150, kWarmMaxBytes = 64 << 20;
    if (!igpt::kHaveThreads) return;  // the single-threaded build would take the frames' time for it
    if (warm) {
        if (!warm->done() && now_ms() < warm_until) return;
        stop_warm_up();
    }
    if (warm_stage >= 2 || !can_complete()) return;
    // Only while its KV cache is small: the heap it grows would otherwise outlast it (a large model's
    // first completion is long enough not to notice a cold start).
    const int32_t samples = std::clamp(settings.samples, 1, 16);
    const int32_t n = warm_stage == 0 ? samples : 1;
    ++warm_stage;
    if (warm_stage == 2 && samples == 1) return;  // one sample was the first warm-up already
    if (n * kv_cache_bytes(model->cfg) > kWarmMaxBytes) return;
    try {
        igpt::CompletionParams p;  // two rows kept: a short prefill, then decode steps until kWarmMs
        p.n_samples = n;
        p.rows_kept = std::min(2, image_h() - 1);
        p.seed = 1;
        p.threads = threads();
        p.top_n = top_n;
        if (!fits_in_memory(n, p.rows_kept * image_w(), true)) return;
        warm = start_session(model, seen_tokens, p);
        warm_until = now_ms() + kWarmMs;
    } catch (const std::exception&) {
        warm_stage = 2;  // not worth a message: the first completion will just start colder
    }
}

void App::stop_warm_up() {
    if (!warm) return;
    warm->cancel();
    retiring.push_back(std::move(warm));  // joined once done, like a cancelled completion
}

void App::poll() {
    for (auto it = retiring.begin(); it != retiring.end();) {
        if ((*it)->done()) it = retiring.erase(it);  // the worker has finished: the join is immediate
        else ++it;
    }
    warm_up();
    if (!session) return;
    // Single-threaded build: the completion advances here, a frame's budget at a time (the frame draws
    // what it made right after). A threaded session ignores step().
    if (session->stepped()) session->step(kStepBudgetMs);
    const igpt::CompletionSession& s = *session;
    const bool finished = s.done();
    const int32_t filled = s.filled();  // read once: tokens [0, filled) of every sample are final
    const int32_t T = s.n_ctx(), tn = top_n;
    for (size_t j = 0; j < session_slots.size(); ++j) {
        SampleResult& r = results[size_t(session_slots[j])];
        if (filled <= r.filled) continue;
        const int32_t* tok = s.tokens(int32_t(j));
        const float* ent = s.entropy(int32_t(j));
        std::copy(tok + r.filled, tok + filled, r.tokens.begin() + r.filled);
        std::copy(ent + r.filled, ent + filled, r.entropy.begin() + r.filled);
        for (int32_t p = std::max(r.filled, s.kept()); p < filled; ++p)
            std::copy_n(s.choices(int32_t(j), p), tn, r.choices.begin() + ptrdiff_t(size_t(p) * size_t(tn)));
        r.filled = filled;
        r.dirty = true;
    }
    (void)T;
    if (finished) {
        try {
            session->wait();
            last_seconds = s.elapsed_seconds();
            last_prefill_seconds = s.prefill_seconds();
            last_decode_tps = s.decode_tokens_per_second();
            last_samples = s.n_samples();
            char buf[128];
            std::snprintf(buf, sizeof buf, "done in %.2f s (%.0f tokens/s)", s.elapsed_seconds(),
                          s.tokens_per_second());
            say(buf);
        } catch (const std::exception& e) {
            say(std::string("completion failed: ") + e.what(), true);
        }
        session.reset();
        session_slots.clear();
    }
}

void App::use_as_input(int32_t slot) {
    if (slot < 0 || slot >= int32_t(results.size()) || !model) return;
    igpt::Image img = sample_image(slot);
    set_input(img, "sample " + std::to_string(slot + 1), true);
    say("sample " + std::to_string(slot + 1) + " is the new input");
}

void App::undo_last() {
    if (undo.empty()) return;
    if (running()) cancel();
    Snapshot s = std::move(undo.back());
    undo.pop_back();
    input = std::move(s.input);
    input_name = std::move(s.input_name);
    settings.rows = s.rows;
    results = std::move(s.results);
    for (auto& r : results) r.dirty = true;
    inspect_sample = inspect_pos = -1;
    refresh_seen();
    say("undone");
}

igpt::Image App::sample_image(int32_t slot) const {
    igpt::Image img;
    img.w = image_w();
    img.h = image_h();
    img.rgb.assign(size_t(img.w) * size_t(img.h) * 3, 48);
    const SampleResult& r = results[size_t(slot)];
    if (model)
        model->palette.dequantize(r.tokens.data(), size_t(r.filled), img.rgb.data());
    return img;
}

// ---- export -----------------------------------------------------------------------------------------------

std::string App::file_stem() const {
    char buf[200];
    std::snprintf(buf, sizeof buf, "igpt_%s_rows%d_t%.2f_k%d_seed%llu", model_name.c_str(), settings.rows,
                  settings.temperature, settings.top_k, (unsigned long long)settings.seed);
    std::string s = buf;
    for (char& c : s)
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-')) c = '-';
    return s;
}

namespace {
std::vector<std::pair<std::string, std::string>> png_text(const App& a, uint64_t seed, int32_t rows) {
    return {{"Software", "igpt web"},
            {"igpt.model", a.model_name},
            {"igpt.rows_kept", std::to_string(rows)},
            {"igpt.temperature", std::to_string(a.settings.temperature)},
            {"igpt.top_k", std::to_string(a.settings.top_k)},
            {"igpt.seed", std::to_string(seed)},
            {"igpt.source", a.input_name}};
}
constexpr int32_t kExportScale = 8;
}  // namespace

void App::download_sample(int32_t slot) {
    if (slot < 0 || slot >= int32_t(results.size())) return;
    try {
        const SampleResult& r = results[size_t(slot)];
        igpt::Image big = igpt::upscale_nearest(sample_image(slot), kExportScale);
        auto png = igpt::encode_png(big, png_text(*this, r.seed, r.kept / image_w()));
        js_download((file_stem() + "_sample" + std::to_string(slot + 1) + ".png").c_str(), png.data(), png.size());
    } catch (const std::exception& e) {
        say(e.what(), true);
    }
}

void App::download_grid() {
    if (results.empty() || seen.rgb.empty()) return;
    try {
        // [what the model saw | sample 1 | sample 2 ...], four per row, 8x enlarged, 8 px gaps.
        const int32_t W = image_w() * kExportScale, H = image_h() * kExportScale, gap = 8;
        const int32_t n = int32_t(results.size()) + 1, cols = std::min(n, 5), rows = (n + cols - 1) / cols;
        igpt::Image grid;
        grid.w = cols * W + (cols + 1) * gap;
        grid.h = rows * H + (rows + 1) * gap;
        grid.rgb.assign(size_t(grid.w) * size_t(grid.h) * 3, 255);
        for (int32_t i = 0; i < n; ++i) {
            igpt::Image tile = igpt::upscale_nearest(i == 0 ? seen : sample_image(i - 1), kExportScale);
            const int32_t x0 = gap + (i % cols) * (W + gap), y0 = gap + (i / cols) * (H + gap);
            for (int32_t y = 0; y < H; ++y)
                std::copy_n(&tile.rgb[size_t(y) * size_t(W) * 3], size_t(W) * 3,
                            &grid.rgb[(size_t(y0 + y) * size_t(grid.w) + size_t(x0)) * 3]);
        }
        auto png = igpt::encode_png(grid, png_text(*this, settings.seed, settings.rows));
        js_download((file_stem() + "_grid.png").c_str(), png.data(), png.size());
    } catch (const std::exception& e) {
        say(e.what(), true);
    }
}

// ---- test hook --------------------------------------------------------------------------------------------

std::string App::state_json() const {
    json j;
    j["model"] = model_name;
    j["model_state"] = int(model_state);
    j["running"] = running();
    j["message"] = message;
    j["error"] = message_is_error;
    j["input"] = input_name;
    j["input_size"] = {input.w, input.h};
    j["settings"] = json::parse(settings.to_json());
    j["seen_tokens"] = seen_tokens;
    j["undo"] = undo.size();
    json rs = json::array();
    for (const SampleResult& r : results)
        rs.push_back({{"kept", r.kept}, {"filled", r.filled}, {"seed", r.seed}, {"tokens", r.tokens}});
    j["results"] = rs;
    j["seen_rect"] = seen_rect;
    j["open_model_rect"] = open_model_rect;
    json models = json::array();
    for (const ManifestEntry& e : manifest)
        models.push_back({{"name", e.name}, {"local", e.local}, {"val_bpp", e.val_bpp}});
    j["models"] = models;
    j["tile_rects"] = tile_rects;
    j["n_ctx"] = n_ctx();
    j["image_w"] = image_w();
    j["threaded"] = igpt::kHaveThreads;
#ifdef __wasm_relaxed_simd__
    j["relaxed_simd"] = true;
#else
    j["relaxed_simd"] = false;
#endif
    j["mode_note"] = mode_note;
    j["software_webgl"] = software_webgl;
    j["frames_drawn"] = frames_drawn;
    j["warmed_up"] = !warm && (warm_stage >= 2 || !igpt::kHaveThreads);
    j["stats"] = {{"seconds", last_seconds}, {"prefill_seconds", last_prefill_seconds},
                  {"decode_tokens_per_second", last_decode_tps}, {"samples", last_samples}};
    return j.dump();
}

}  // namespace igpt_web
