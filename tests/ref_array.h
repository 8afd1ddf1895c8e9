// Reads the arrays tests/ref/*.py write for the C++ tests: "IGPTREF1", int32 ndim, int64 dims, float64 data.
#pragma once
#include <catch2/catch.hpp>
#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

namespace igpt_test {

struct RefArray {
    std::vector<int64_t> dims;
    std::vector<double> v;
};

inline RefArray read_ref_array(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    REQUIRE(f.good());
    char magic[8];
    f.read(magic, 8);
    REQUIRE(std::string(magic, 8) == "IGPTREF1");
    int32_t ndim = 0;
    f.read(reinterpret_cast<char*>(&ndim), 4);
    REQUIRE((ndim >= 1 && ndim <= 8));
    RefArray a;
    a.dims.resize(static_cast<size_t>(ndim));
    f.read(reinterpret_cast<char*>(a.dims.data()), 8 * ndim);
    size_t n = 1;
    for (int64_t d : a.dims) n *= size_t(d);
    a.v.resize(n);
    f.read(reinterpret_cast<char*>(a.v.data()), std::streamsize(8 * n));
    REQUIRE(f.good());
    return a;
}

}  // namespace igpt_test
