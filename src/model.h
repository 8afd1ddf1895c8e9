// A model in memory (config, palette, f32 weights, provenance) and its file: one self-contained
// safetensors file. Layout of the file:
//   8-byte little-endian header length N, N bytes of JSON header, then raw little-endian tensor data.
//   __metadata__: "igpt.format" = "1", "igpt.config" = ModelConfig JSON, "igpt.provenance" = JSON object
//   (data, command, steps, ...), free-form.
//   Tensors: "palette" U8 [K, 3]; every parameter of param_layout() by name, as F32, F16 or I8. An I8
//   matrix [R, C] has a companion "<name>.scale" F32 [R] (value = int8 * scale[row]). Vectors stay F32.
//   Optional classification head (`igpt finetune`): "igpt.classes" = JSON array of class names in the
//   metadata, tensors "clf.w" F32 [n_classes, C] and "clf.b" F32 [n_classes]; logits = clf.w · (ln_f output
//   averaged over positions) + clf.b. Generation ignores it.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "config.h"
#include "palette.h"
#include "weights.h"

namespace igpt {

enum class DType { F32, F16, I8 };
const char* dtype_name(DType t);
DType dtype_from_name(const std::string& s);  // "f32" | "f16" | "int8"; throws igpt::Error

struct Model {
    ModelConfig cfg;
    Palette palette;
    std::vector<ParamSpec> specs;  // param_layout(cfg)
    std::vector<float> params;     // flat, param_count(specs) floats
    std::string provenance = "{}"; // JSON object text
    DType file_dtype = DType::F32; // how the weights were stored in the file it came from
    // Classification head (optional; see the file layout above). Empty classes = none.
    std::vector<std::string> classes;  // class names
    std::vector<float> clf_w;          // (classes, C)
    std::vector<float> clf_b;          // (classes)
    bool has_head() const { return !classes.empty(); }

    ParamPtrs ptrs() { return bind_params(cfg, params.data()); }
    const ParamPtrs ptrs() const { return bind_params(cfg, const_cast<float*>(params.data())); }
};

// A model with OpenAI-style initialisation: weights N(0, 0.02), residual output projections scaled by
// 1/sqrt(2L), gains 1, biases 0. Deterministic for a seed.
Model init_model(const ModelConfig& cfg, const Palette& palette, uint64_t seed);

struct ModelLimits {
    int64_t max_file_bytes = int64_t(1) << 40;  // the browser build lowers this
};

// Throws igpt::Error with one line naming the problem: missing file, truncated data, bad header,
// wrong dtype or shape, tensor out of bounds or overlapping, NaN/Inf, config invalid...
Model load_model(const std::string& path, const ModelLimits& limits = {});
Model load_model_from_memory(const uint8_t* data, size_t size, const std::string& what,
                             const ModelLimits& limits = {});
// Atomic: temporary file, fsync, rename. Never leaves a half-written file at `path`.
void save_model(const Model& m, const std::string& path, DType dtype = DType::F32);
std::vector<uint8_t> serialize_model(const Model& m, DType dtype = DType::F32);

// A palette on its own (what `igpt palette` writes): a safetensors file with the "palette" tensor.
// load_palette_file also accepts a model file and returns its palette.
void save_palette_file(const Palette& p, const std::string& path, const std::string& provenance = "{}");
Palette load_palette_file(const std::string& path);

// Writes `bytes` to `path` via a temporary file + fsync + rename (shared by every writer of the project).
void write_file_atomic(const std::string& path, const uint8_t* bytes, size_t size);
std::vector<uint8_t> read_file(const std::string& path, int64_t max_bytes);  // throws igpt::Error

}  // namespace igpt
