// libFuzzer target: the model file reader (load_model_from_memory): safetensors header, tensors, metadata. See fuzz_entry.h.
#include "fuzz_entry.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    igpt_fuzz::model_file(data, size);
    return 0;
}
