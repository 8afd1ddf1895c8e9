// Each subcommand group registers itself on the CLI11 app; main.cpp calls every register_* below.
// A subcommand's callback throws igpt::Error on bad input; main prints "igpt: <message>" and exits 1.
#pragma once
#include <CLI/CLI.hpp>

namespace igpt_cli {
void register_inference(CLI::App& app);  // complete, sample, nll, info, bench   (cmd_inference.cpp, cmd_bench.cpp)
void register_palette(CLI::App& app);    // palette                             (cmd_palette.cpp)
void register_bench(CLI::App& app);      // bench                               (cmd_bench.cpp)
void register_train(CLI::App& app);      // train, export                       (cmd_train.cpp)
void register_plot(CLI::App& app);       // plot                                (cmd_plot.cpp)
void register_import(CLI::App& app);     // import hf, import tf                (cmd_import.cpp)
void register_probe(CLI::App& app);      // features, probe, finetune, classify (cmd_probe.cpp)
}  // namespace igpt_cli
