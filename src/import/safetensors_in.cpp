// Foreign safetensors files (Hugging Face checkpoints): 8-byte header length, JSON header, raw data.
#include <nlohmann/json.hpp>

#include "error.h"
#include "formats.h"

namespace igpt::imp {

void add_safetensors(TensorSource& src, const std::string& path) {
    const uint64_t size = file_size(path);
    if (size < 8) throw Error(path + " is not a safetensors file (shorter than 8 bytes)");
    uint8_t len_bytes[8];
    read_at(path, 0, 8, len_bytes, "the header length");
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; --i) hlen = (hlen << 8) | len_bytes[i];
    if (hlen > (uint64_t(100) << 20) || hlen > size - 8)
        throw Error(path + " is not a safetensors file or is truncated (header length " + std::to_string(hlen) +
                    ", file size " + std::to_string(size) + ")");
    std::string text(size_t(hlen), '\0');
    read_at(path, 8, hlen, text.data(), "the JSON header");
    const nlohmann::json h = nlohmann::json::parse(text, nullptr, false);
    if (h.is_discarded() || !h.is_object()) throw Error(path + ": the safetensors header is not a JSON object");
    const uint64_t data_start = 8 + hlen, data_size = size - data_start;
    for (auto it = h.begin(); it != h.end(); ++it) {
        if (it.key() == "__metadata__") continue;
        const auto& t = it.value();
        const std::string what = path + ": tensor '" + it.key() + "'";
        if (!t.is_object() || !t.contains("dtype") || !t["dtype"].is_string() || !t.contains("shape") ||
            !t["shape"].is_array() || !t.contains("data_offsets") || !t["data_offsets"].is_array() ||
            t["data_offsets"].size() != 2)
            throw Error(what + " has a malformed header entry (needs dtype, shape, data_offsets)");
        TensorRef r;
        r.file = path;
        r.type_name = t["dtype"].get<std::string>();
        r.type = r.type_name == "F32"    ? SrcType::F32
                 : r.type_name == "F16"  ? SrcType::F16
                 : r.type_name == "BF16" ? SrcType::BF16
                 : r.type_name == "F64"  ? SrcType::F64
                                         : SrcType::Other;
        for (const auto& d : t["shape"]) {
            if (!d.is_number_unsigned()) throw Error(what + " has a non-integer or negative dimension");
            r.shape.push_back(d.get<int64_t>());
        }
        const auto& off = t["data_offsets"];
        if (!off[0].is_number_unsigned() || !off[1].is_number_unsigned())
            throw Error(what + " has malformed data_offsets");
        const uint64_t b = off[0].get<uint64_t>(), e = off[1].get<uint64_t>();
        if (b > e) throw Error(what + " has data_offsets that run backwards");
        if (e > data_size)
            throw Error(path + " is truncated: tensor '" + it.key() + "' ends at byte " + std::to_string(data_start + e) +
                        " but the file has " + std::to_string(size));
        r.offset = data_start + b;
        r.size = e - b;
        src.add(it.key(), std::move(r));
    }
}

}  // namespace igpt::imp
