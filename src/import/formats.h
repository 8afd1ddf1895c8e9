// Internal to igpt_import: readers of the foreign containers. Each validates its framing and registers
// where every tensor's bytes are; the bytes themselves are read later, one tensor at a time.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "tensor_source.h"

namespace igpt::imp {

// A safetensors file (Hugging Face): the JSON header's tensors, any dtype (non-float ones are kept as
// SrcType::Other so that a request for them fails with their dtype named).
void add_safetensors(TensorSource& src, const std::string& path);

// A TensorFlow tensor bundle: `prefix`.index (LevelDB-style table: footer, index block, data blocks of
// prefix-compressed entries; key "" = BundleHeaderProto, other keys = BundleEntryProto) and the data
// shards `prefix`.data-SSSSS-of-NNNNN. Only uncompressed table blocks (what TensorFlow writes).
void add_tf_bundle(TensorSource& src, const std::string& prefix);

// A NumPy .npy file of floats (<f2, <f4, <f8), C or Fortran order, any rank; values in C order.
struct NpyArray {
    std::vector<int64_t> shape;
    std::vector<double> v;
};
NpyArray read_npy(const std::string& path);

}  // namespace igpt::imp
