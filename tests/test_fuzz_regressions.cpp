// Every input a fuzzer found (tests/data/fuzz/<target>/*) replayed through the same entry point as the
// fuzz target (fuzz/fuzz_entry.h): each must now load or be refused with an igpt::Error, never crash, hang
// or break a round trip. Add a file here whenever fuzz/run_all.sh reports a finding and the bug is fixed.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <functional>
#include <map>

#include "../fuzz/fuzz_entry.h"

namespace {

using Entry = std::function<void(const uint8_t*, size_t)>;

const std::map<std::string, Entry>& entries() {
    static const std::map<std::string, Entry> m = {
        {"model_file", igpt_fuzz::model_file},
        {"palette_file", igpt_fuzz::palette_file},
        {"image_decode", igpt_fuzz::image_decode},
#ifdef IGPT_FUZZ_HAS_TRAIN
        {"cifar_batch", igpt_fuzz::cifar_batch},
        {"token_cache", igpt_fuzz::token_cache},
        {"checkpoint_file", igpt_fuzz::checkpoint_file},
#endif
    };
    return m;
}

}  // namespace

TEST_CASE("saved fuzzer findings load or fail with an igpt::Error", "[fuzz]") {
    namespace fs = std::filesystem;
    const fs::path root = fs::path(IGPT_SOURCE_DIR) / "tests" / "data" / "fuzz";
    int replayed = 0;
    std::error_code ec;
    for (const auto& [target, entry] : entries()) {
        if (!fs::is_directory(root / target, ec)) continue;
        for (const auto& e : fs::directory_iterator(root / target)) {
            if (!e.is_regular_file()) continue;
            std::ifstream f(e.path(), std::ios::binary);
            const std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
            INFO(target << ": " << e.path().filename().string() << " (" << bytes.size() << " bytes)");
            CHECK_NOTHROW(entry(bytes.data(), bytes.size()));
            ++replayed;
        }
    }
    INFO("replayed " << replayed << " inputs");
    SUCCEED();
}
