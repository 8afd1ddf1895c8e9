// Parameter layout of the model: every parameter lives in one contiguous float buffer (llm.c style), so
// the trainer can keep gradients and AdamW moments in buffers of the same layout, and the model file maps
// named tensors onto it. Matrices are stored [out, in] row-major (PyTorch nn.Linear convention).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "config.h"

namespace igpt {

struct ParamSpec {
    std::string name;            // tensor name in the model file, e.g. "h.3.attn.qkv.w"
    std::vector<int64_t> shape;  // e.g. {3C, C}
    size_t offset = 0;           // in floats, into the flat buffer
    size_t numel = 0;
    bool matrix = false;         // 2-D weight: may be stored as f16 / int8 (per-row scale) in a file
};

// Canonical order of parameters for a config. Names:
//   sos [C]; wte [V, C]; wpe [T, C];
//   h.{i}.ln_1.g [C]; h.{i}.attn.qkv.w [3C, C] (rows q | k | v); h.{i}.attn.qkv.b [3C] (if bias);
//   h.{i}.attn.proj.w [C, C]; h.{i}.attn.proj.b [C]; h.{i}.ln_2.g [C];
//   h.{i}.mlp.fc.w [H, C]; h.{i}.mlp.fc.b [H]; h.{i}.mlp.proj.w [C, H]; h.{i}.mlp.proj.b [C];
//   ln_f.g [C]; head.w [V, C]
std::vector<ParamSpec> param_layout(const ModelConfig& cfg);
size_t param_count(const std::vector<ParamSpec>& specs);

// Typed pointers into a flat buffer laid out by param_layout. Bias pointers are null when cfg.bias is
// false (ops treat a null bias as zero). Bind the same struct to weights, gradients or optimizer moments.
struct LayerParams {
    float* ln1_g = nullptr;   // (C)
    float* qkv_w = nullptr;   // (3C, C)
    float* qkv_b = nullptr;   // (3C) or null
    float* proj_w = nullptr;  // (C, C)
    float* proj_b = nullptr;  // (C) or null
    float* ln2_g = nullptr;   // (C)
    float* fc_w = nullptr;    // (H, C)
    float* fc_b = nullptr;    // (H) or null
    float* mproj_w = nullptr; // (C, H)
    float* mproj_b = nullptr; // (C) or null
};

struct ParamPtrs {
    float* sos = nullptr;     // (C)
    float* wte = nullptr;     // (V, C)
    float* wpe = nullptr;     // (T, C)
    std::vector<LayerParams> layers;
    float* lnf_g = nullptr;   // (C)
    float* head_w = nullptr;  // (V, C)
};

ParamPtrs bind_params(const ModelConfig& cfg, float* base);

}  // namespace igpt
