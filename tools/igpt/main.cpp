// igpt: the native command-line tool. Every subcommand lives in a cmd_*.cpp file; errors are one line.
#include <cstdio>
#include <exception>

#include "commands.h"
#include "error.h"

int main(int argc, char** argv) {
    CLI::App app{"igpt: Image GPT — complete images, sample, score, train and probe pixel GPTs"};
    app.require_subcommand(1);
    app.set_version_flag("--version", "igpt 0.1.0");
    igpt_cli::register_inference(app);
    igpt_cli::register_palette(app);
    igpt_cli::register_bench(app);
    igpt_cli::register_import(app);
#ifdef IGPT_HAS_TRAIN_CLI
    igpt_cli::register_train(app);
#endif
#ifdef IGPT_HAS_PLOT_CLI
    igpt_cli::register_plot(app);
#endif
#ifdef IGPT_HAS_PROBE_CLI
    igpt_cli::register_probe(app);
#endif
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    } catch (const igpt::Error& e) {
        std::fprintf(stderr, "igpt: %s\n", e.what());
        return 1;
    } catch (const std::bad_alloc&) {
        std::fprintf(stderr, "igpt: out of memory\n");
        return 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "igpt: %s\n", e.what());
        return 1;
    }
    return 0;
}
