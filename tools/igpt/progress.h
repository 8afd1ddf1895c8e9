// A progress bar for long work on stderr: bar, count, rate, ETA, and a free-form status (loss, ...).
// Redraws at most ~10 times a second; prints plain lines instead when stderr is not a terminal.
#pragma once
#include <chrono>
#include <cstdint>
#include <string>

namespace igpt_cli {

class Progress {
public:
    Progress(std::string label, int64_t total, std::string unit = "it");
    ~Progress();                                   // finishes the line
    void update(int64_t done, const std::string& status = "");
    void finish(const std::string& status = "");

private:
    std::string label_, unit_;
    int64_t total_;
    bool tty_;
    bool finished_ = false;
    std::chrono::steady_clock::time_point start_, last_;
    int64_t last_plain_pct_ = -1;
    int uncaught_ = 0;  // exceptions in flight at construction: an error unwinding past us prints no summary
};

}  // namespace igpt_cli
