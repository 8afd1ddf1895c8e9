// The one piece of the NumPy .npy format that its two readers share (the importer's float arrays in
// src/import, the probes' features and labels in src/probe): a value of the header's Python dict literal.
#pragma once
#include <string>

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

}  // namespace igpt
