// The wasm <-> JavaScript boundary. JavaScript side: web/igpt.js (window.igptHost).
#include "bridge.h"

#include <emscripten.h>

#include <cstdlib>
#include <string>

#include "app.h"

// ---- C++ -> JavaScript ------------------------------------------------------------------------------------

EM_JS(void, igpt_js_ready, (void* app), { igptHost.ready(app); });
EM_JS(void, igpt_js_save_settings, (const char* json), { igptHost.saveSettings(UTF8ToString(json)); });
EM_JS(void, igpt_js_load_model, (const char* url, const char* name, double size),
      { igptHost.loadModel(UTF8ToString(url), UTF8ToString(name), size); });
EM_JS(void, igpt_js_pick_file, (), { igptHost.pickFile(); });
EM_JS(void, igpt_js_pick_model_file, (), { igptHost.pickModelFile(); });
EM_JS(void, igpt_js_load_local_model, (const char* name), { igptHost.loadLocalModel(UTF8ToString(name)); });
EM_JS(double, igpt_js_memory_max, (), { return igptHost.memoryMax(); });
EM_JS(void, igpt_js_download, (const char* name, const uint8_t* data, size_t size),
      { igptHost.download(UTF8ToString(name), data, size); });
EM_JS(void, igpt_js_clear_cache, (), { igptHost.clearCache(); });
EM_JS(void, igpt_js_copy_embed_snippet, (), { igptHost.copyEmbedSnippet(); });

namespace igpt_web {
void js_ready(App* app) { igpt_js_ready(app); }
void js_save_settings(const char* json) { igpt_js_save_settings(json); }
void js_load_model(const char* url, const char* name, double size) { igpt_js_load_model(url, name, size); }
void js_pick_file() { igpt_js_pick_file(); }
void js_pick_model_file() { igpt_js_pick_model_file(); }
void js_load_local_model(const char* name) { igpt_js_load_local_model(name); }
double js_memory_max() { return igpt_js_memory_max(); }
void js_download(const char* name, const uint8_t* data, size_t size) { igpt_js_download(name, data, size); }
void js_clear_cache() { igpt_js_clear_cache(); }
void js_copy_embed_snippet() { igpt_js_copy_embed_snippet(); }
}  // namespace igpt_web

// ---- JavaScript -> C++ ------------------------------------------------------------------------------------
// Byte buffers are malloc'ed by the page and freed here.

using igpt_web::App;

extern "C" {

EMSCRIPTEN_KEEPALIVE void igpt_web_set_settings(App* app, const char* json) { app->settings.merge_json(json); }

EMSCRIPTEN_KEEPALIVE void igpt_web_set_flags(App* app, int embed, int autoplay, int hardware_threads) {
    app->embed = embed != 0;
    app->autoplay = autoplay != 0;
    app->hardware_threads = hardware_threads;
}

// Single-threaded build: the page's explanation of why (not cross-origin isolated, ...), shown in the UI.
EMSCRIPTEN_KEEPALIVE void igpt_web_set_mode_note(App* app, const char* note) { app->mode_note = note; }

EMSCRIPTEN_KEEPALIVE void igpt_web_set_manifest(App* app, const char* json) { app->set_manifest(json); }

EMSCRIPTEN_KEEPALIVE void igpt_web_model_progress(App* app, double loaded, double total) {
    app->dl_loaded = loaded;
    if (total > 0) app->dl_total = total;
}

EMSCRIPTEN_KEEPALIVE void igpt_web_model_bytes(App* app, uint8_t* data, size_t size, const char* name,
                                               const char* note) {
    app->on_model_bytes(data, size, name, note);
    std::free(data);
}

EMSCRIPTEN_KEEPALIVE void igpt_web_model_failed(App* app, const char* name, const char* why) {
    app->on_model_failed(name, why);
}

// A model file chosen on the visitor's disk (name, size only: the page reads it when asked). 1 = accepted.
EMSCRIPTEN_KEEPALIVE int igpt_web_add_local_model(App* app, const char* file_name, double size) {
    return app->add_local_model(file_name, size) ? 1 : 0;
}

EMSCRIPTEN_KEEPALIVE void igpt_web_open_image(App* app, uint8_t* data, size_t size, const char* name) {
    app->open_image_bytes(data, size, name);
    std::free(data);
}

EMSCRIPTEN_KEEPALIVE void igpt_web_add_gallery(App* app, uint8_t* data, size_t size, const char* name) {
    app->add_gallery_image(data, size, name);
    std::free(data);
}

EMSCRIPTEN_KEEPALIVE void igpt_web_say(App* app, const char* msg, int error) { app->say(msg, error != 0); }

// Test hook and automation: the app's state as JSON (valid until the next call), and a few actions.
EMSCRIPTEN_KEEPALIVE const char* igpt_web_state(App* app) {
    app->state_buf = app->state_json();
    return app->state_buf.c_str();
}

// Whether a completion runs: what a script polls while one does (state() copies every sample's tokens).
EMSCRIPTEN_KEEPALIVE int igpt_web_running(App* app) { return app->running() ? 1 : 0; }

EMSCRIPTEN_KEEPALIVE void igpt_web_action(App* app, const char* action, int arg) {
    const std::string a = action;
    if (a == "complete") app->complete();
    else if (a == "cancel") app->cancel();
    else if (a == "undo") app->undo_last();
    else if (a == "reroll") app->reroll(arg);
    else if (a == "use") app->use_as_input(arg);
    else if (a == "rows") app->settings.rows = arg;
    else if (a == "png") app->download_sample(arg);
    else if (a == "grid") app->download_grid();
    else if (a == "clear_cache") igpt_web::js_clear_cache();
    else if (a == "samples") app->settings.samples = arg;
    else if (a == "model" && arg >= 0 && arg < int(app->manifest.size()))
        app->request_model(app->manifest[size_t(arg)].name);
    else if (a == "gallery" && arg >= 0 && arg < int(app->gallery.size()))
        app->set_input(app->gallery[size_t(arg)].second, app->gallery[size_t(arg)].first, true);
}

}  // extern "C"
