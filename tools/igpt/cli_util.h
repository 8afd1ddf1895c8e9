// Helpers shared by the CLI's subcommands: model loading with the device option, image grids, colour maps.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "backend.h"
#include "image.h"
#include "model.h"

namespace igpt_cli {

igpt::BackendKind parse_device(const std::string& device);  // "cpu" | "cuda" | "auto"
std::shared_ptr<const igpt::Model> load_model_shared(const std::string& path);
// Expands folders into their image files (sorted); files are kept as given. Throws when nothing is found.
std::vector<std::string> expand_image_args(const std::vector<std::string>& args);

// Tokens -> a model-resolution image; pixels at index >= valid are drawn grey.
igpt::Image tokens_to_image(const igpt::Model& m, const int32_t* tokens, int32_t valid);

// A grid of equally sized tiles (rows x cols), each enlarged by `scale`, separated by `scale`-pixel gaps.
igpt::Image make_grid(const std::vector<std::vector<igpt::Image>>& rows, int32_t scale);

// The exact command line of this process (program name without its path), for provenance.
std::string command_line();

// Maps v in [0, 1] to a perceptual dark-to-bright colour (black, purple, orange, yellow).
void heat_colour(float v, uint8_t* rgb);

}  // namespace igpt_cli
