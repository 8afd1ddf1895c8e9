// libFuzzer target: the CIFAR-10 binary batch reader (scan_source + read_item). See fuzz_entry.h.
#include "fuzz_entry.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    igpt_fuzz::cifar_batch(data, size);
    return 0;
}
