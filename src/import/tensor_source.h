// Internal to igpt_import: where a foreign tensor's bytes are (file, offset, size, type, shape) and how to
// read them as float32 with every check done (bounds, size, checksum, finite values).
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace igpt::imp {

enum class SrcType { F16, BF16, F32, F64, Other };
const char* src_type_name(SrcType t);
size_t src_type_size(SrcType t);  // 0 for Other

struct TensorRef {
    std::string file;              // where the bytes are
    uint64_t offset = 0;           // absolute, in bytes
    uint64_t size = 0;             // in bytes
    SrcType type = SrcType::Other;
    std::string type_name;         // as the source spells it (for messages): "F32", "DT_INT64", ...
    std::vector<int64_t> shape;
    bool has_crc = false;          // TensorFlow bundles: masked crc32c of the bytes
    uint32_t crc_masked = 0;
};

std::string shape_str(const std::vector<int64_t>& shape);  // "[512, 3]"

// Named tensors of one checkpoint (possibly spread over several files).
class TensorSource {
public:
    explicit TensorSource(std::string what) : what_(std::move(what)) {}
    void add(const std::string& name, TensorRef ref);
    bool has(const std::string& name) const { return refs_.count(name) != 0; }
    const TensorRef& ref(const std::string& name) const;  // throws "<what> lacks tensor 'name'"
    const std::map<std::string, TensorRef>& all() const { return refs_; }

    // Reads tensor `name` as float32. Its shape must equal `want` once leading size-1 axes are dropped
    // from both (TensorFlow sometimes keeps them). Throws on a missing tensor, a wrong shape or dtype, a
    // short file, a checksum mismatch, NaN or Inf.
    std::vector<float> read(const std::string& name, const std::vector<int64_t>& want) const;

    // Progress over the bytes read by read(): set the total (sum of the tensors to be read) first.
    void set_progress(std::function<void(int64_t, int64_t)> cb, int64_t total) {
        progress_ = std::move(cb);
        total_ = total;
    }
    uint64_t bytes_of(const std::string& name) const { return ref(name).size; }

private:
    std::string what_;
    std::map<std::string, TensorRef> refs_;
    std::function<void(int64_t, int64_t)> progress_;
    int64_t total_ = 0;
    mutable int64_t done_ = 0;
};

// Size of a regular file; throws "cannot open <path>: <reason>" when missing.
uint64_t file_size(const std::string& path);
// Reads [offset, offset + n) of a file; throws naming `what` when the file is shorter (truncated).
void read_at(const std::string& path, uint64_t offset, uint64_t n, void* dst, const std::string& what);
std::vector<uint8_t> read_whole(const std::string& path, uint64_t max_bytes);

// CRC-32C (Castagnoli), as LevelDB and TensorFlow use it, and their "masked" form.
uint32_t crc32c_extend(uint32_t crc, const uint8_t* data, size_t n);
inline uint32_t crc32c(const uint8_t* data, size_t n) { return crc32c_extend(0, data, n); }
inline uint32_t crc32c_mask(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xa282ead8u; }

}  // namespace igpt::imp
