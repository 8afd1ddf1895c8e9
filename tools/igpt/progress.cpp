// Progress bar on stderr (see progress.h).
#include "progress.h"

#include <cstdio>
#include <exception>
#include <unistd.h>

namespace igpt_cli {

namespace {
std::string fmt_time(double s) {
    if (!(s >= 0) || s > 1e7) return "--:--";
    char buf[32];
    const long t = long(s + 0.5);
    if (t >= 3600) std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
    else std::snprintf(buf, sizeof buf, "%02ld:%02ld", t / 60, t % 60);
    return buf;
}
}  // namespace

Progress::Progress(std::string label, int64_t total, std::string unit)
    : label_(std::move(label)), unit_(std::move(unit)), total_(total), tty_(isatty(2)),
      start_(std::chrono::steady_clock::now()), last_(start_ - std::chrono::seconds(1)),
      uncaught_(std::uncaught_exceptions()) {}

Progress::~Progress() {
    if (finished_) return;
    if (std::uncaught_exceptions() > uncaught_) {  // unwinding on an error: leave the line to the message
        if (tty_) std::fprintf(stderr, "\r\x1b[K");
        return;
    }
    finish();
}

void Progress::update(int64_t done, const std::string& status) {
    const auto now = std::chrono::steady_clock::now();
    const double el = std::chrono::duration<double>(now - start_).count();
    const double rate = el > 0 ? double(done) / el : 0;
    const double eta = rate > 0 && total_ > 0 ? double(total_ - done) / rate : -1;
    const int64_t pct = total_ > 0 ? done * 100 / total_ : 0;
    if (tty_) {
        if (done < total_ && now - last_ < std::chrono::milliseconds(100)) return;
        last_ = now;
        const int width = 28;
        const int fill = total_ > 0 ? int(double(done) / double(total_) * width) : 0;
        std::string bar(size_t(fill), '#');
        bar.resize(size_t(width), '.');
        std::fprintf(stderr, "\r%s [%s] %3lld%% %lld/%lld %.1f %s/s ETA %s %s\x1b[K", label_.c_str(), bar.c_str(),
                     (long long)pct, (long long)done, (long long)total_, rate, unit_.c_str(), fmt_time(eta).c_str(),
                     status.c_str());
    } else {
        // Not a terminal (logs, CI): a plain line every 10%.
        if (pct / 10 == last_plain_pct_ / 10 && done < total_) return;
        last_plain_pct_ = pct;
        std::fprintf(stderr, "%s %3lld%% %lld/%lld %.1f %s/s ETA %s %s\n", label_.c_str(), (long long)pct,
                     (long long)done, (long long)total_, rate, unit_.c_str(), fmt_time(eta).c_str(), status.c_str());
    }
    std::fflush(stderr);
}

void Progress::finish(const std::string& status) {
    if (finished_) return;
    finished_ = true;
    const double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    if (tty_) std::fprintf(stderr, "\r\x1b[K");
    std::fprintf(stderr, "%s done: %lld %s in %s (%.1f %s/s) %s\n", label_.c_str(), (long long)total_, unit_.c_str(),
                 fmt_time(el).c_str(), el > 0 ? double(total_) / el : 0.0, unit_.c_str(), status.c_str());
}

}  // namespace igpt_cli
