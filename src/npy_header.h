// The one piece of the NumPy .npy format that its two readers share (the importer's float arrays in
// src/import, the probes' features and labels in src/probe): a value of the header's Python dict literal.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace igpt {

// The value text after 'key': in the header's Python dict literal, or "" when absent.
inline std::string npy_dict_value(const std::string& h, const std::string& key) {
    for (const char q : {'\'', '"'}) {
        const std::string k = std::string(1, q) + key + q;
        size_t p = h.find(k);
        if (p == std::string::npos) continue;
        p = h.find(':', p + k.size());
        if (p == std::string::npos) return "";
        ++p;
        while (p < h.size() && h[p] == ' ') ++p;
        if (p >= h.size()) return "";
        if (h[p] == '\'' || h[p] == '"') {
            const size_t e = h.find(h[p], p + 1);
            return e == std::string::npos ? "" : h.substr(p + 1, e - p - 1);
        }
        if (h[p] == '(') {
            const size_t e = h.find(')', p);
            return e == std::string::npos ? "" : h.substr(p, e - p + 1);
        }
        size_t e = p;
        while (e < h.size() && h[e] != ',' && h[e] != '}') ++e;
        return h.substr(p, e - p);
    }
    return "";
}

// The header's shape tuple ("(512, 3)", "(512,)", "()") as dimensions and their product. Returns "" or
// what is wrong with it (a malformed entry, or a product past 2^40 values).
inline std::string npy_parse_shape(const std::string& shape, std::vector<int64_t>& dims, size_t& count) {
    dims.clear();
    count = 1;
    for (size_t p = 1; p < shape.size();) {
        while (p < shape.size() && (shape[p] == ' ' || shape[p] == ',')) ++p;
        if (p >= shape.size() || shape[p] == ')') break;
        size_t e = p;
        while (e < shape.size() && shape[e] >= '0' && shape[e] <= '9') ++e;
        if (e == p || e - p > 12) return "malformed shape " + shape;
        dims.push_back(std::stoll(shape.substr(p, e - p)));
        if (dims.back() && count > (size_t(1) << 40) / size_t(dims.back())) return "impossibly large shape";
        count *= size_t(dims.back());
        p = e;
    }
    return "";
}

}  // namespace igpt
