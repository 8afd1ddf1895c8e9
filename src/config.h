// Model configuration: the shape of an Image GPT network. It lives in the model file's metadata
// (key "igpt.config", JSON), never in code; the named presets below only seed `igpt train`.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace igpt {

struct ModelConfig {
    std::string name = "tiny";   // preset name or "custom"
    int32_t vocab = 512;         // palette size = number of output logits
    int32_t width = 128;         // d_model (C)
    int32_t layers = 4;          // transformer blocks (L)
    int32_t heads = 4;           // attention heads; head_dim = width / heads
    int32_t image_h = 32;        // the model's resolution; sequence length n_ctx = image_h * image_w
    int32_t image_w = 32;
    int32_t mlp_mult = 4;        // MLP hidden = mlp_mult * width
    float norm_eps = 1e-5f;      // RMS norm epsilon
    bool bias = false;           // projections carry biases (Hugging Face layout); OpenAI's have none

    int32_t n_ctx() const { return image_h * image_w; }
    int32_t head_dim() const { return width / heads; }
    int32_t hidden() const { return mlp_mult * width; }
    int64_t n_params() const;    // total parameter count (including sos, embeddings, head)

    std::string to_json() const;
    static ModelConfig from_json(const std::string& json);  // throws igpt::Error naming the bad key
    void validate() const;                                  // throws igpt::Error
};

// Named configurations: the paper's S/M/L and the small ones this project trains.
// Throws igpt::Error listing the known names when `name` is unknown.
ModelConfig config_preset(const std::string& name);
std::vector<std::string> config_preset_names();

}  // namespace igpt
