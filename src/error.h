// One exception type for every user-facing failure: its message is a single line that names the problem.
#pragma once
#include <stdexcept>
#include <string>

namespace igpt {

struct Error : std::runtime_error {
    explicit Error(const std::string& msg) : std::runtime_error(msg) {}
};

}  // namespace igpt
