// libFuzzer target: image decoding (decode_image, every stb format, small ImageLimits) and prepare_image. See fuzz_entry.h.
#include "fuzz_entry.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    igpt_fuzz::image_decode(data, size);
    return 0;
}
