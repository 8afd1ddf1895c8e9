// Calls from C++ into the page's JavaScript (window.igptHost, web/igpt.js). The calls the other way, from
// JavaScript into the app, are the igpt_web_* exports in bridge.cpp; they take the App handle that
// js_ready() hands to the page, so nothing here is global.
#pragma once
#include <cstddef>
#include <cstdint>

namespace igpt_web {
struct App;

void js_ready(App* app);                              // the app is up: the page sends settings, models, images
void js_save_settings(const char* json);              // localStorage + the page's URL
void js_load_model(const char* url, const char* name, double size);  // fetch (cached) -> igpt_web_model_*
void js_pick_file();                                  // opens the file picker -> igpt_web_open_image
void js_pick_model_file();                            // the model file picker -> igpt_web_add_local_model
void js_load_local_model(const char* name);           // reads the kept File again -> igpt_web_model_*
double js_memory_max();                               // bytes the wasm memory may grow to (<= 2 GB)
void js_download(const char* filename, const uint8_t* data, size_t size);
void js_clear_cache();                                // deletes the cached models + offline copy
void js_copy_embed_snippet();                         // an <iframe> of the current settings -> clipboard
}  // namespace igpt_web
