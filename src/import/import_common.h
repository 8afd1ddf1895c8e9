// Internal to igpt_import: what both importers share (config checks, filling the parameter buffer).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "model.h"
#include "tensor_source.h"

namespace igpt::imp {

// dst (cols, rows) = transpose of src (rows, cols); both row-major.
void transpose_into(const std::vector<float>& src, int64_t rows, int64_t cols, float* dst);
void copy_into(const std::vector<float>& src, float* dst);

// "S" / "M" / "L" when the shape is one of the paper's presets at 32x32 with 512 colours, else "custom".
std::string preset_name_for(const ModelConfig& c);

// An image side from a sequence length that must be a square; throws naming `what`.
int32_t square_side(int64_t n_ctx, const std::string& what);

// Sets the model's palette, specs and zeroed parameters for cfg.
Model empty_model(const ModelConfig& cfg, Palette palette);

}  // namespace igpt::imp
