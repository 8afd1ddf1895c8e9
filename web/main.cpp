// Image GPT in the browser: Dear ImGui over SDL2 + WebGL2, the engine's CompletionSession on pthreads.
// Reads top to bottom: init (SDL, GL, ImGui), the frame (events, progress, panels), shutdown. Inference never
// runs in the frame: the frame only copies finished tokens out of the session (App::poll) and draws them --
// except in the single-threaded build (no WebAssembly threads), where App::poll advances the completion by
// a fixed budget of milliseconds per frame first.
// A frame is drawn only when something on screen changed (the Dear ImGui draw lists or a texture), so an
// idle page costs almost nothing. Where WebGL is rendered in software (no GPU: SwiftShader, llvmpipe),
// changes that no input caused -- a completion's progress, a download's -- are drawn at most 8 times a
// second: each frame there costs the CPU the model needs. Input is always answered at display rate.
#include <GLES3/gl3.h>
#include <SDL.h>
#include <emscripten.h>
#include <emscripten/html5.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>

#include "app.h"
#include "bridge.h"
#include "imgui.h"
#include "imgui_impl_opengl3.h"
#include "imgui_impl_sdl.h"

using igpt_web::App;

namespace {

struct Frame {
    SDL_Window* window = nullptr;
    SDL_GLContext gl = nullptr;
    App app;
    std::string saved_settings;  // last JSON handed to the page (URL + localStorage)
    double saved_at = 0;
    // Drawing on demand: what the last drawn frame showed, and when the last frame was built.
    uint64_t drawn_lists = 0, drawn_textures = ~uint64_t(0);
    double built_at = -1e9;
    int32_t input_frames = 0;     // frames still drawn at display rate after the last input event
    double paced_ms = 0;          // least time between two frames that no input caused (0: display rate)
};

// A 64-bit FNV-1a over what ImGui will draw: vertices, indices, and every command's texture and clip.
uint64_t draw_signature(const ImDrawData* d) {
    uint64_t h = 1469598103934665603ull;
    auto mix = [&h](const void* p, size_t n) {
        const auto* b = static_cast<const unsigned char*>(p);
        for (size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 1099511628211ull;
    };
    mix(&d->DisplaySize, sizeof(d->DisplaySize));
    for (int i = 0; i < d->CmdListsCount; ++i) {
        const ImDrawList* l = d->CmdLists[i];
        mix(l->VtxBuffer.Data, size_t(l->VtxBuffer.Size) * sizeof(ImDrawVert));
        mix(l->IdxBuffer.Data, size_t(l->IdxBuffer.Size) * sizeof(ImDrawIdx));
        for (const ImDrawCmd& c : l->CmdBuffer) {
            mix(&c.ClipRect, sizeof(c.ClipRect));
            mix(&c.TextureId, sizeof(c.TextureId));
            mix(&c.ElemCount, sizeof(c.ElemCount));
        }
    }
    return h;
}

// Whether the browser renders WebGL on the CPU (its unmasked renderer string names a software rasteriser).
bool software_webgl() {
    return EM_ASM_INT({
        try {
            const ext = GLctx.getExtension('WEBGL_debug_renderer_info');
            const r = String(GLctx.getParameter(ext ? ext.UNMASKED_RENDERER_WEBGL : GLctx.RENDERER));
            return /swiftshader|llvmpipe|softpipe|software|basic render/i.test(r) ? 1 : 0;
        } catch (e) {
            return 0;
        }
    }) != 0;
}

const ImU32 kLineColor = IM_COL32(255, 210, 60, 255);
const ImU32 kGreyOut = IM_COL32(10, 10, 14, 170);
const ImU32 kCursor = IM_COL32(255, 255, 255, 255);

// ---- textures: upload what changed since the last frame --------------------------------------------------

void upload_results(App& a) {
    a.tex.resize_tiles(a.results.size());
    const int32_t W = a.image_w(), H = a.image_h();
    const float max_bits = a.model ? std::log2(float(a.model->cfg.vocab)) : 9.0f;
    for (size_t i = 0; i < a.results.size(); ++i) {
        igpt_web::SampleResult& r = a.results[i];
        if (!r.dirty) continue;
        igpt::Image img = a.sample_image(int32_t(i));
        a.tex.samples[i].upload(img.rgb.data(), W, H);
        std::vector<uint8_t> rgb(size_t(W) * H * 3), alpha(size_t(W) * H, 0);
        for (int32_t p = r.kept; p < r.filled; ++p) {
            igpt_web::entropy_color(r.entropy[size_t(p)], max_bits, &rgb[size_t(p) * 3]);
            alpha[size_t(p)] = 235;
        }
        a.tex.entropy[i].upload(rgb.data(), W, H, alpha.data());
        r.dirty = false;
    }
}

// ---- widgets ----------------------------------------------------------------------------------------------

// An image with the crop line: dragging (mouse or touch) anywhere on it moves the line, snapped to rows.
void crop_view(App& a, const char* id, void* tex, ImVec2 size, bool enabled) {
    ImDrawList* dl = ImGui::GetWindowDrawList();
    const ImVec2 p0 = ImGui::GetCursorScreenPos();
    ImGui::InvisibleButton(id, size);
    if (tex == a.tex.seen.imgui_id()) a.seen_rect = {p0.x, p0.y, size.x, size.y};
    const int32_t H = a.image_h();
    const float cell = size.y / float(H);
    if (enabled && ImGui::IsItemActive()) {
        const float y = ImGui::GetIO().MousePos.y - p0.y;
        a.settings.rows = std::clamp(int32_t(std::lround(y / cell)), 0, H);
    }
    if (ImGui::IsItemHovered()) ImGui::SetMouseCursor(ImGuiMouseCursor_ResizeNS);
    dl->AddImage(tex, p0, ImVec2(p0.x + size.x, p0.y + size.y));
    const float ly = p0.y + cell * float(a.settings.rows);
    dl->AddRectFilled(ImVec2(p0.x, ly), ImVec2(p0.x + size.x, p0.y + size.y), kGreyOut);
    dl->AddLine(ImVec2(p0.x - 4, ly), ImVec2(p0.x + size.x + 4, ly), kLineColor, 3.0f);
    dl->AddTriangleFilled(ImVec2(p0.x - 10, ly - 6), ImVec2(p0.x - 10, ly + 6), ImVec2(p0.x - 2, ly), kLineColor);
}

// Top colours the model considered at one generated pixel.
void choices_tooltip(const App& a, int32_t s, int32_t pos) {
    const igpt_web::SampleResult& r = a.results[size_t(s)];
    const igpt::TokenChoice* c = &r.choices[size_t(pos) * size_t(a.top_n)];
    ImGui::Text("sample %d, pixel (%d, %d): entropy %.2f bits", s + 1, pos % a.image_w(), pos / a.image_w(),
                r.entropy[size_t(pos)]);
    const auto& pal = a.model->palette.rgb();
    for (int32_t k = 0; k < a.top_n; ++k) {
        const int32_t t = c[k].token;
        if (t < 0 || t >= a.model->palette.k() || c[k].prob <= 0) continue;
        ImVec4 col(pal[size_t(t) * 3] / 255.f, pal[size_t(t) * 3 + 1] / 255.f, pal[size_t(t) * 3 + 2] / 255.f, 1);
        ImGui::ColorButton("##c", col, ImGuiColorEditFlags_NoTooltip, ImVec2(18, 18));
        ImGui::SameLine();
        ImGui::Text("%5.1f%%  colour %d%s", 100.0 * c[k].prob, t, t == r.tokens[size_t(pos)] ? "  <- drawn" : "");
    }
}

// One sample tile: the sample (or the original on the left of the compare split), the entropy overlay,
// the pixel being generated, and a click to inspect a pixel.
void sample_tile(App& a, int32_t i, float size) {
    ImGui::PushID(i);
    ImDrawList* dl = ImGui::GetWindowDrawList();
    const ImVec2 p0 = ImGui::GetCursorScreenPos(), p1(p0.x + size, p0.y + size);
    ImGui::InvisibleButton("tile", ImVec2(size, size));
    a.tile_rects.resize(a.results.size());
    a.tile_rects[size_t(i)] = {p0.x, p0.y, size, size};
    const igpt_web::SampleResult& r = a.results[size_t(i)];
    const int32_t W = a.image_w(), H = a.image_h();
    const float cw = size / float(W), ch = size / float(H);
    dl->AddImage(a.tex.samples[size_t(i)].imgui_id(), p0, p1);
    if (a.compare > 0.0f) {
        const float x = p0.x + size * a.compare;
        dl->AddImage(a.tex.display.imgui_id(), p0, ImVec2(x, p1.y), ImVec2(0, 0), ImVec2(a.compare, 1));
        dl->AddLine(ImVec2(x, p0.y), ImVec2(x, p1.y), kLineColor, 2.0f);
    }
    if (a.settings.overlay) dl->AddImage(a.tex.entropy[size_t(i)].imgui_id(), p0, p1);
    const bool live = a.running() && std::find(a.session_slots.begin(), a.session_slots.end(), i) != a.session_slots.end();
    if (live && r.filled < W * H) {  // the pixel being generated now
        const float x = p0.x + float(r.filled % W) * cw, y = p0.y + float(r.filled / W) * ch;
        dl->AddRect(ImVec2(x - 1, y - 1), ImVec2(x + cw + 1, y + ch + 1), kCursor, 0, 0, 2.0f);
    }
    const float ly = p0.y + float(r.kept / W) * ch;
    dl->AddLine(ImVec2(p0.x, ly), ImVec2(p1.x, ly), IM_COL32(255, 210, 60, 120), 1.0f);
    if (a.inspect_sample == i && a.inspect_pos >= 0) {
        const float x = p0.x + float(a.inspect_pos % W) * cw, y = p0.y + float(a.inspect_pos / W) * ch;
        dl->AddRect(ImVec2(x - 1, y - 1), ImVec2(x + cw + 1, y + ch + 1), IM_COL32(0, 255, 255, 255), 0, 0, 2.0f);
    }
    if (ImGui::IsItemHovered() && a.model) {
        const ImVec2 m = ImGui::GetIO().MousePos;
        const int32_t px = std::clamp(int32_t((m.x - p0.x) / cw), 0, W - 1),
                      py = std::clamp(int32_t((m.y - p0.y) / ch), 0, H - 1);
        const int32_t pos = py * W + px;
        if (pos >= r.kept && pos < r.filled) {
            ImGui::BeginTooltip();
            choices_tooltip(a, i, pos);
            ImGui::EndTooltip();
            if (ImGui::IsItemClicked()) {
                a.inspect_sample = i;
                a.inspect_pos = pos;
            }
        }
    }
    const bool busy = a.running();
    ImGui::BeginDisabled(busy);
    if (ImGui::SmallButton("re-roll")) a.reroll(i);
    ImGui::SameLine();
    if (ImGui::SmallButton("use")) a.use_as_input(i);
    ImGui::SameLine();
    if (ImGui::SmallButton("png")) a.download_sample(i);
    ImGui::EndDisabled();
    ImGui::PopID();
}

std::string bytes_text(double b) {
    char buf[32];
    if (b >= 1 << 20) std::snprintf(buf, sizeof buf, "%.1f MB", b / (1 << 20));
    else std::snprintf(buf, sizeof buf, "%.0f KB", b / 1024);
    return buf;
}

// ---- panels -----------------------------------------------------------------------------------------------

void panel_controls(App& a) {
    // Image
    if (!a.embed) {
        ImGui::TextDisabled("IMAGE");
        if (ImGui::Button("Open image...")) igpt_web::js_pick_file();
        ImGui::SameLine();
        ImGui::TextDisabled("or drop one on the page");
        for (size_t g = 0; g < a.gallery.size(); ++g) {
            ImGui::PushID(int(g));
            if (g % 5) ImGui::SameLine();
            if (ImGui::ImageButton(a.tex.gallery[g].imgui_id(), ImVec2(40, 40), ImVec2(0, 0), ImVec2(1, 1), 2))
                a.set_input(a.gallery[g].second, a.gallery[g].first, true);
            if (ImGui::IsItemHovered()) ImGui::SetTooltip("%s", a.gallery[g].first.c_str());
            ImGui::PopID();
        }
        ImGui::Separator();
    }

    // Model
    ImGui::TextDisabled("MODEL");
    const char* current = a.model_wanted.empty() ? "(none)" : a.model_wanted.c_str();
    ImGui::SetNextItemWidth(-1);
    if (ImGui::BeginCombo("##model", current)) {
        for (const auto& m : a.manifest) {
            std::string label = m.name + "  (" + (m.resolution.empty() ? "" : m.resolution + ", ") +
                                bytes_text(double(m.size)) + ")";
            if (ImGui::Selectable(label.c_str(), m.name == a.model_wanted)) a.request_model(m.name);
            if (ImGui::IsItemHovered() && !m.trained_on.empty()) {
                if (m.val_bpp > 0)
                    ImGui::SetTooltip("trained on: %s\nvalidation: %.3f bits per pixel (lower is better)",
                                      m.trained_on.c_str(), m.val_bpp);
                else
                    ImGui::SetTooltip("trained on: %s", m.trained_on.c_str());
            }
        }
        ImGui::EndCombo();
    }
    if (a.model_state == igpt_web::ModelState::Downloading) {
        const double elapsed = (igpt_web::now_ms() - a.dl_start) / 1000.0;
        const double frac = a.dl_total > 0 ? std::min(1.0, a.dl_loaded / a.dl_total) : 0.0;
        const double rate = elapsed > 0 ? a.dl_loaded / elapsed : 0;
        char buf[96];
        std::snprintf(buf, sizeof buf, "%s / %s  ETA %.0f s", bytes_text(a.dl_loaded).c_str(),
                      bytes_text(a.dl_total).c_str(), rate > 0 ? (a.dl_total - a.dl_loaded) / rate : 0.0);
        ImGui::ProgressBar(float(frac), ImVec2(-1, 0), buf);
    } else if (a.model) {
        for (const auto& m : a.manifest) {
            if (m.name != a.model_name) continue;
            if (!m.trained_on.empty()) ImGui::TextWrapped("trained on: %s", m.trained_on.c_str());
            if (m.val_bpp > 0) ImGui::TextDisabled("validation: %.3f bits per pixel", m.val_bpp);
        }
        if (!a.model_note.empty()) ImGui::TextDisabled("%s", a.model_note.c_str());
    }
    if (!a.embed) {
        // A model file from the visitor's disk (e.g. an iGPT-S made with `igpt import`), also by drag-and-drop.
        if (ImGui::SmallButton("Open model file...")) igpt_web::js_pick_model_file();
        const ImVec2 r0 = ImGui::GetItemRectMin(), r1 = ImGui::GetItemRectMax();
        a.open_model_rect = {r0.x, r0.y, r1.x - r0.x, r1.y - r0.y};
        if (ImGui::IsItemHovered())
            ImGui::SetTooltip("a .safetensors model file on this computer (up to 1 GB), e.g. from igpt import;\n"
                              "or drop it on the page");
        ImGui::SameLine();
        if (ImGui::SmallButton("clear cache")) igpt_web::js_clear_cache();
        if (ImGui::IsItemHovered())
            ImGui::SetTooltip("forget the downloaded models and the offline copy of this page");
    }
    ImGui::Separator();

    // Sampling
    ImGui::TextDisabled("SAMPLING");
    ImGui::PushItemWidth(-90);
    ImGui::SliderInt("rows kept", &a.settings.rows, 0, a.image_h());
    ImGui::SliderInt("samples", &a.settings.samples, 1, 16);
    ImGui::SliderFloat("temperature", &a.settings.temperature, 0.0f, 2.0f, "%.2f");
    ImGui::SliderInt("top-k", &a.settings.top_k, 0, a.model ? a.model->cfg.vocab : 512, a.settings.top_k ? "%d" : "off");
    int seed = int(a.settings.seed & 0x7fffffff);
    if (ImGui::InputInt("seed", &seed)) a.settings.seed = uint64_t(std::max(0, seed));
    if (!a.embed && igpt::kHaveThreads) {
        ImGui::SliderInt("threads", &a.settings.threads, 0, 8, a.settings.threads ? "%d" : "auto");
    }
    ImGui::PopItemWidth();

    // Run
    ImGui::Spacing();
    if (!a.running()) {
        ImGui::BeginDisabled(!a.can_complete());
        if (ImGui::Button("Complete", ImVec2(120, 32))) a.complete();
        ImGui::EndDisabled();
    } else if (ImGui::Button("Cancel", ImVec2(120, 32))) {
        a.cancel();
    }
    ImGui::SameLine();
    ImGui::BeginDisabled(a.undo.empty());
    if (ImGui::Button("Undo", ImVec2(60, 32))) a.undo_last();
    ImGui::EndDisabled();
    if (a.running()) {
        const igpt::CompletionSession& s = *a.session;
        const int32_t T = s.n_ctx(), k = s.kept(), f = s.filled();
        const float frac = T > k ? float(f - k) / float(T - k) : 1.0f;
        const double tps = s.tokens_per_second();
        const double eta = tps > 0 ? double(T - f) * double(s.n_samples()) / tps : 0.0;
        char buf[96];
        std::snprintf(buf, sizeof buf, "%d/%d  %.0f tok/s  ETA %.1f s", f - k, T - k, tps, eta);
        ImGui::ProgressBar(frac, ImVec2(-1, 0), buf);
    }
    ImGui::Separator();

    // View
    ImGui::TextDisabled("VIEW");
    ImGui::Checkbox("uncertainty overlay (entropy)", &a.settings.overlay);
    ImGui::SetNextItemWidth(-90);
    ImGui::SliderFloat("compare", &a.compare, 0.0f, 1.0f, a.compare > 0 ? "%.2f" : "off");
    if (!a.embed) {
        ImGui::BeginDisabled(a.results.empty());
        if (ImGui::Button("Download grid (PNG)")) a.download_grid();
        ImGui::EndDisabled();
        ImGui::SameLine();
        if (ImGui::Button("Copy embed code")) igpt_web::js_copy_embed_snippet();
    }
    if (a.inspect_sample >= 0 && a.inspect_sample < int32_t(a.results.size()) && a.model) {
        ImGui::Separator();
        ImGui::TextDisabled("PIXEL");
        choices_tooltip(a, a.inspect_sample, a.inspect_pos);
    }
}

void panel_images(App& a) {
    const float avail = ImGui::GetContentRegionAvail().x;
    const int32_t H = a.image_h(), W = a.image_w();
    const float view = std::floor(std::min(256.0f, (avail - 16) / 2) / float(H)) * float(H);
    const ImVec2 vsize(view * float(W) / float(H), view);
    if (a.input.rgb.empty()) {
        ImGui::TextDisabled("Open an image, drop one here, or pick a sample on the left.");
    } else {
        ImGui::BeginGroup();
        ImGui::Text("original (centre crop)");
        crop_view(a, "orig", a.tex.display.imgui_id(), vsize, !a.running());
        ImGui::EndGroup();
        ImGui::SameLine(0, 16);
        ImGui::BeginGroup();
        ImGui::Text("what the model sees: %dx%d, %d colours", W, H, a.model ? a.model->palette.k() : 0);
        crop_view(a, "seen", a.tex.seen.imgui_id(), vsize, !a.running());
        ImGui::EndGroup();
        ImGui::TextDisabled("drag the line: %d of %d rows kept", a.settings.rows, H);
    }
    if (a.results.empty()) return;
    ImGui::Separator();
    ImGui::Text("samples");
    const float gap = ImGui::GetStyle().ItemSpacing.x;
    const int32_t n = int32_t(a.results.size());
    const int32_t cols = std::clamp(int32_t((avail + gap) / (128 + gap)), 1, std::min(n, 8));
    const float tile = std::floor(std::min(192.0f, (avail - gap * float(cols - 1)) / float(cols)) / float(W)) * float(W);
    for (int32_t i = 0; i < n; ++i) {
        if (i % cols) ImGui::SameLine();
        ImGui::BeginGroup();
        sample_tile(a, i, std::max(tile, float(W)));
        ImGui::EndGroup();
    }
}

void status_bar(const App& a) {
    if (a.message.empty()) return;
    ImGui::PushStyleColor(ImGuiCol_Text, a.message_is_error ? ImVec4(1.0f, 0.45f, 0.4f, 1) : ImVec4(0.7f, 0.85f, 1, 1));
    ImGui::TextUnformatted(a.message.c_str());
    ImGui::PopStyleColor();
    if (a.software_webgl && a.running()) {
        ImGui::SameLine();
        ImGui::TextDisabled("(no GPU: WebGL runs on the CPU, so progress is drawn 8 times a second)");
    }
}

// ---- the frame --------------------------------------------------------------------------------------------

void frame(void* arg) {
    Frame& f = *static_cast<Frame*>(arg);
    App& a = f.app;

    // The canvas follows its CSS box (the page lays it out; no HiDPI scaling).
    double cw = 0, ch = 0;
    emscripten_get_element_css_size("#canvas", &cw, &ch);
    int ww = 0, wh = 0;
    SDL_GetWindowSize(f.window, &ww, &wh);
    if (cw > 0 && ch > 0 && (int(cw) != ww || int(ch) != wh)) SDL_SetWindowSize(f.window, int(cw), int(ch));

    SDL_Event e;
    while (SDL_PollEvent(&e)) {
        ImGui_ImplSDL2_ProcessEvent(&e);
        f.input_frames = 3;  // ImGui settles hover and active states over the next frames
    }

    a.poll();
    if (a.autoplay && !a.autoplay_done && a.can_complete()) {
        a.autoplay_done = true;
        a.complete();
    }
    // New sample tiles get their textures now (the panels below refer to them); new pixels of existing
    // ones are uploaded only in a frame that is drawn.
    if (a.tex.samples.size() != a.results.size()) upload_results(a);

    // On software WebGL a frame that no input asks for is not even built more often than it may be drawn
    // (every paced_ms): building one costs the main thread a few milliseconds that a completion's threads
    // need (a batch of 8 samples of the tiny model took 1.6-1.8 s with a frame built at every display
    // refresh, 1.3-1.5 s with one in four).
    const double now = igpt_web::now_ms();
    if (f.paced_ms > 0 && f.input_frames == 0 && now - f.built_at < f.paced_ms) return;
    f.built_at = now;

    ImGui_ImplOpenGL3_NewFrame();
    ImGui_ImplSDL2_NewFrame();
    ImGui::NewFrame();

    ImGuiIO& io = ImGui::GetIO();
    if (!io.WantTextInput) {
        if (io.KeyCtrl && ImGui::IsKeyPressed(SDL_SCANCODE_Z)) a.undo_last();
        if (ImGui::IsKeyPressed(SDL_SCANCODE_ESCAPE)) a.cancel();
    }

    ImGui::SetNextWindowPos(ImVec2(0, 0));
    ImGui::SetNextWindowSize(io.DisplaySize);
    // No background: glClear paints the window's colour, and on software WebGL every full-canvas pass
    // (here a blended quad over the clear) costs the CPU milliseconds a frame.
    ImGui::Begin("igpt", nullptr,
                 ImGuiWindowFlags_NoDecoration | ImGuiWindowFlags_NoMove | ImGuiWindowFlags_NoBringToFrontOnFocus |
                     ImGuiWindowFlags_NoSavedSettings | ImGuiWindowFlags_NoBackground);
    const bool narrow = io.DisplaySize.x < 720;  // phones: controls above the images
    const float status_h = ImGui::GetFrameHeightWithSpacing();
    if (!a.embed) {
        ImGui::Text("Image GPT");
        ImGui::SameLine();
        ImGui::TextDisabled("-- keep the top of an image, the model paints the rest");
    }
    if (!a.mode_note.empty()) {  // the single-threaded build says why it runs and what it costs
        ImGui::PushStyleColor(ImGuiCol_Text, ImVec4(1.0f, 0.8f, 0.3f, 1));
        ImGui::TextWrapped("%s", a.mode_note.c_str());
        ImGui::PopStyleColor();
    }
    const float body_h = ImGui::GetContentRegionAvail().y - status_h;
    if (narrow) {
        ImGui::BeginChild("all", ImVec2(0, body_h));
        panel_controls(a);
        ImGui::Separator();
        panel_images(a);
        ImGui::EndChild();
    } else {
        ImGui::BeginChild("controls", ImVec2(a.embed ? 260 : 320, body_h), true);
        panel_controls(a);
        ImGui::EndChild();
        ImGui::SameLine();
        ImGui::BeginChild("images", ImVec2(0, body_h), true);
        panel_images(a);
        ImGui::EndChild();
    }
    status_bar(a);
    ImGui::End();

    ImGui::Render();
    // Draw only a changed frame (nothing drawn: the canvas keeps showing the last one); changes without
    // input come at most every paced_ms, as frames without input are built no more often.
    const uint64_t lists = draw_signature(ImGui::GetDrawData());
    const bool tiles = std::any_of(a.results.begin(), a.results.end(), [](const auto& r) { return r.dirty; });
    const bool changed = lists != f.drawn_lists || igpt_web::texture_changes() != f.drawn_textures || tiles;
    if (f.input_frames > 0 || changed) {
        upload_results(a);
        glViewport(0, 0, int(io.DisplaySize.x), int(io.DisplaySize.y));
        const ImVec4 bg = ImGui::GetStyleColorVec4(ImGuiCol_WindowBg);  // the colour of the frame's window
        glClearColor(bg.x * bg.w, bg.y * bg.w, bg.z * bg.w, 1.0f);
        glClear(GL_COLOR_BUFFER_BIT);
        ImGui_ImplOpenGL3_RenderDrawData(ImGui::GetDrawData());
        SDL_GL_SwapWindow(f.window);
        f.drawn_lists = lists;
        f.drawn_textures = igpt_web::texture_changes();
        ++a.frames_drawn;
    }
    if (f.input_frames > 0) --f.input_frames;

    // Persist settings when they change (throttled: browsers limit history.replaceState calls).
    if (now - f.saved_at > 400) {
        std::string s = a.settings.to_json();
        if (s != f.saved_settings) {
            igpt_web::js_save_settings(s.c_str());
            f.saved_settings = s;
            f.saved_at = now;
        }
    }
}

}  // namespace

int main() {
    // --- init: SDL video + a GLES 3.0 (WebGL2) context, Dear ImGui ---
    if (SDL_Init(SDL_INIT_VIDEO | SDL_INIT_TIMER) != 0) {
        std::printf("SDL_Init failed: %s\n", SDL_GetError());
        return 1;
    }
    SDL_GL_SetAttribute(SDL_GL_CONTEXT_PROFILE_MASK, SDL_GL_CONTEXT_PROFILE_ES);
    SDL_GL_SetAttribute(SDL_GL_CONTEXT_MAJOR_VERSION, 3);
    SDL_GL_SetAttribute(SDL_GL_CONTEXT_MINOR_VERSION, 0);
    SDL_GL_SetAttribute(SDL_GL_DOUBLEBUFFER, 1);
    SDL_GL_SetAttribute(SDL_GL_DEPTH_SIZE, 0);  // ImGui draws in 2D: no depth or stencil buffer to keep
    SDL_GL_SetAttribute(SDL_GL_STENCIL_SIZE, 0);
    static Frame f;  // lives for the page's lifetime; the main loop below never returns
    f.window = SDL_CreateWindow("igpt", SDL_WINDOWPOS_CENTERED, SDL_WINDOWPOS_CENTERED, 1280, 800,
                                SDL_WINDOW_OPENGL | SDL_WINDOW_RESIZABLE);
    f.gl = f.window ? SDL_GL_CreateContext(f.window) : nullptr;
    if (!f.gl) {
        std::printf("cannot create a WebGL2 context: %s\n", SDL_GetError());
        EM_ASM({ igptHost.fatal("This browser could not create a WebGL2 context."); });
        return 1;
    }
    SDL_GL_SetSwapInterval(1);
    f.app.software_webgl = software_webgl();
    f.paced_ms = f.app.software_webgl ? 125.0 : 0.0;
    IMGUI_CHECKVERSION();
    ImGui::CreateContext();
    ImGui::GetIO().IniFilename = nullptr;
    ImGui::StyleColorsDark();
    ImGui::GetStyle().FrameRounding = 3;
    ImGui::GetStyle().WindowRounding = 0;
    ImGui_ImplSDL2_InitForOpenGL(f.window, f.gl);
    ImGui_ImplOpenGL3_Init("#version 300 es");

    // --- loop: the page now sends settings, the model list and images (bridge.cpp) ---
    igpt_web::js_ready(&f.app);
    emscripten_set_main_loop_arg(frame, &f, 0, true);

    // --- shutdown (not reached in the browser: the page's lifetime ends the app) ---
    ImGui_ImplOpenGL3_Shutdown();
    ImGui_ImplSDL2_Shutdown();
    ImGui::DestroyContext();
    SDL_GL_DeleteContext(f.gl);
    SDL_DestroyWindow(f.window);
    SDL_Quit();
    return 0;
}
