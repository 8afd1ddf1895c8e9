// libFuzzer target: the palette file reader (load_palette_file). See fuzz_entry.h.
#include "fuzz_entry.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    igpt_fuzz::palette_file(data, size);
    return 0;
}
