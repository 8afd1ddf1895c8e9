// Training checkpoints: model, AdamW moments, step and data-order position, in one file written atomically
// (temporary file, fsync, rename), so a process killed at any moment leaves the previous checkpoint whole.
// The random state needs no saving: every draw is seeded from (seed, step or sample number).
//
// File: "IGPTCKP1", u64 JSON length, JSON {format, config, options, step, epoch, pos, wall_seconds,
// n_params, palette_k}, then palette (k*3 bytes), params, adam_m, adam_v (f32 little-endian each).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "config.h"
#include "dataset.h"
#include "palette.h"

namespace igpt::train {

struct Checkpoint {
    ModelConfig cfg;
    Palette palette;
    std::string options_json = "{}";  // the TrainOptions of the run (resume reuses them)
    int64_t step = 0;                 // optimizer steps done
    DataCursor cursor;                // next training image
    double wall_seconds = 0;          // training wall time so far, over all sessions
    std::vector<float> params, adam_m, adam_v;
};

void save_checkpoint(const std::string& path, const Checkpoint& ck);
Checkpoint load_checkpoint(const std::string& path);  // throws igpt::Error naming the problem

}  // namespace igpt::train
