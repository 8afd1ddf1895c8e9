// Importing OpenAI's published Image GPT checkpoints (iGPT-S/M/L) into the project's model file.
//
// Two sources, both read directly in C++ (no Python, no TensorFlow on the user's machine):
//   * Hugging Face (openai/imagegpt-small|medium|large): model.safetensors (or shards) + config.json +
//     preprocessor_config.json ("clusters"). Conv1D weights are [in, out] and are transposed; wte has
//     vocab + 1 rows, the last being the start-of-sequence vector; projections carry biases.
//   * OpenAI's own TensorFlow checkpoint: model.ckpt-N.index (a LevelDB-style table of BundleEntryProto)
//     + model.ckpt-N.data-*-of-* shards, and kmeans_centers.npy. Attention weights are
//     [heads, head_dim, width]; no biases.
//
//   igpt::Model m = igpt::import_hf({"~/imagegpt-small"});
//   igpt::save_model(m, "igpt-s.safetensors", igpt::DType::I8);
//
// Every problem (missing file or key, shape, dtype, truncated or corrupt data) is one igpt::Error line
// that names the file and the tensor.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "model.h"

namespace igpt {

struct ImportOptions {
    // Optional: called as tensors are read; bytes of tensor data done / total.
    std::function<void(int64_t done, int64_t total)> on_progress;
};

// `inputs`: a folder holding the three files, or the files themselves (one or more *.safetensors shards,
// config.json, preprocessor_config.json) in any order.
Model import_hf(const std::vector<std::string>& inputs, const ImportOptions& opts = {});

// `ckpt_prefix`: the checkpoint prefix, e.g. ".../model.ckpt-1000000" (the .index and .data-* files
// beside it); a path ending in ".index" is accepted too. `config`: "S", "M", "L" to check the checkpoint
// against that preset, or "" to take the shape from the checkpoint itself.
Model import_tf(const std::string& ckpt_prefix, const std::string& clusters_npy, const std::string& config = "",
                const ImportOptions& opts = {});

// k colour clusters in [-1, 1] (k*3 values, RGB) -> the 8-bit palette: round((c + 1) * 127.5), clamped.
Palette palette_from_clusters(const std::vector<double>& clusters, int32_t k, const std::string& what);

}  // namespace igpt
