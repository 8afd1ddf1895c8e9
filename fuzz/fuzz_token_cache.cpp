// libFuzzer target: the memory-mapped token cache reader (TokenDataset). See fuzz_entry.h.
#include "fuzz_entry.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    igpt_fuzz::token_cache(data, size);
    return 0;
}
