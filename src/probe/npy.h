// NumPy .npy files of float32 features and int32 labels: what `igpt features` writes and `igpt probe`
// reads back. The reader is strict: little-endian <f4 / <i4 only, C order, the rank the caller expects;
// anything else is one igpt::Error naming the file and the problem.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace igpt::probe {

void write_npy_f32(const std::string& path, const float* data, const std::vector<int64_t>& shape);
void write_npy_i32(const std::string& path, const int32_t* data, const std::vector<int64_t>& shape);

template <typename T>
struct NpyData {
    std::vector<int64_t> shape;
    std::vector<T> v;  // C order
};
// min_rank..max_rank: the ranks the caller accepts (e.g. 2..3 for features, 1..1 for labels).
NpyData<float> read_npy_f32(const std::string& path, int32_t min_rank, int32_t max_rank);
NpyData<int32_t> read_npy_i32(const std::string& path, int32_t min_rank, int32_t max_rank);

}  // namespace igpt::probe
