// libFuzzer target: the training checkpoint reader (load_checkpoint). See fuzz_entry.h.
#include "fuzz_entry.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    igpt_fuzz::checkpoint_file(data, size);
    return 0;
}
