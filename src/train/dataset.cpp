// Image sources, the cached token dataset (memory-mapped) and batch sampling (see dataset.h).
#include "dataset.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>

#include "cpu/thread_pool.h"
#include "error.h"
#include "model.h"  // write_file_atomic, read_file
#include "sampler.h"

namespace fs = std::filesystem;

namespace igpt::train {

uint64_t hash_bytes(const void* data, size_t n, uint64_t h) {
    const uint8_t* p = static_cast<const uint8_t*>(data);
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h;
}

uint64_t mix_seed(uint64_t a, uint64_t b) {
    uint64_t z = a * 0x9E3779B97F4A7C15ull + b + 0x632BE59BD9B4E019ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// --- sources -----------------------------------------------------------------------------------------------
namespace {

constexpr int64_t kCifarRecord = 1 + 3072;

bool is_image_file(const fs::path& p) {
    std::string ext = p.extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return char(std::tolower(c)); });
    static const char* exts[] = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tga", ".psd",
                                 ".hdr", ".pic", ".pnm", ".ppm", ".pgm"};
    for (const char* e : exts)
        if (ext == e) return true;
    return false;
}

uint64_t hash_str(const std::string& s, uint64_t h) { return hash_bytes(s.data(), s.size() + 1, h); }

uint64_t hash_file_identity(const std::string& path, uint64_t h) {
    struct stat st {};
    h = hash_str(path, h);
    if (::stat(path.c_str(), &st) == 0) {
        int64_t v[3] = {int64_t(st.st_size), int64_t(st.st_mtim.tv_sec), int64_t(st.st_mtim.tv_nsec)};
        h = hash_bytes(v, sizeof v, h);
    }
    return h;
}

std::vector<std::string> sorted_images_in(const fs::path& dir, bool recursive) {
    std::vector<std::string> out;
    if (recursive) {
        for (const auto& e : fs::recursive_directory_iterator(dir, fs::directory_options::skip_permission_denied))
            if (e.is_regular_file() && is_image_file(e.path())) out.push_back(e.path().string());
    } else {
        for (const auto& e : fs::directory_iterator(dir))
            if (e.is_regular_file() && is_image_file(e.path())) out.push_back(e.path().string());
    }
    std::sort(out.begin(), out.end());
    return out;
}

void add_cifar_file(ImageSource& src, const std::string& path) {
    std::error_code ec;
    const int64_t size = int64_t(fs::file_size(path, ec));
    if (ec) throw Error(path + ": cannot read (" + ec.message() + ")");
    if (size == 0 || size % kCifarRecord != 0)
        throw Error(path + ": not a CIFAR-10 binary batch (size " + std::to_string(size) +
                    " is not a multiple of 3073 bytes)");
    std::ifstream f(path, std::ios::binary);
    std::vector<uint8_t> labels(size / kCifarRecord);
    for (int64_t r = 0; r < size / kCifarRecord; r++) {
        f.seekg(r * kCifarRecord);
        char c = 0;
        f.read(&c, 1);
        if (!f) throw Error(path + ": read error");
        labels[r] = uint8_t(c);
        if (labels[r] > 9) throw Error(path + ": record " + std::to_string(r) + " has label " + std::to_string(labels[r]) +
                                       ", not a CIFAR-10 batch");
        src.items.push_back({path, r * kCifarRecord, int32_t(labels[r])});
    }
    src.fingerprint = hash_file_identity(path, src.fingerprint);
}

}  // namespace

ImageSource scan_source(const std::string& given) {
    ImageSource src;
    src.root = given;
    src.fingerprint = hash_str("igpt-source-v1", 1469598103934665603ull);
    std::error_code ec;
    if (!fs::exists(given, ec)) throw Error(given + ": no such file or directory");
    // absolute paths: the cache key must not depend on the working directory
    const std::string path = fs::weakly_canonical(given, ec).string();
    if (fs::is_regular_file(path)) {
        if (fs::path(path).extension() != ".bin")
            throw Error(path + ": a file given as data must be a CIFAR-10 binary batch (.bin); give a folder of images");
        src.kind = ImageSource::Kind::Cifar;
        src.classes = {"airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"};
        add_cifar_file(src, path);
        return src;
    }
    // CIFAR-10 binary folder: data_batch_*.bin
    std::vector<std::string> batches;
    for (const auto& e : fs::directory_iterator(path)) {
        const std::string name = e.path().filename().string();
        if (e.is_regular_file() && name.rfind("data_batch_", 0) == 0 && e.path().extension() == ".bin")
            batches.push_back(e.path().string());
    }
    if (!batches.empty()) {
        std::sort(batches.begin(), batches.end());
        src.kind = ImageSource::Kind::Cifar;
        src.classes = {"airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"};
        for (const std::string& b : batches) add_cifar_file(src, b);
        return src;
    }
    std::vector<std::string> flat = sorted_images_in(path, false);
    std::vector<std::string> subdirs;
    for (const auto& e : fs::directory_iterator(path))
        if (e.is_directory() && e.path().filename().string()[0] != '.') subdirs.push_back(e.path().string());
    std::sort(subdirs.begin(), subdirs.end());
    if (flat.empty() && !subdirs.empty()) {
        src.kind = ImageSource::Kind::ImageFolder;
        for (const std::string& d : subdirs) {
            std::vector<std::string> files = sorted_images_in(d, true);
            if (files.empty()) continue;
            const int32_t label = int32_t(src.classes.size());
            src.classes.push_back(fs::path(d).filename().string());
            for (const std::string& f : files) src.items.push_back({f, -1, label});
        }
    } else {
        src.kind = ImageSource::Kind::Flat;
        for (const std::string& f : flat) src.items.push_back({f, -1, -1});
    }
    if (src.items.empty())
        throw Error(path + ": no images found (expected image files, class subfolders of images, or CIFAR-10 "
                           "data_batch_*.bin)");
    for (const auto& it : src.items) src.fingerprint = hash_file_identity(it.path, src.fingerprint);
    return src;
}

Image read_item(const ImageSource& src, size_t i) {
    const ImageSource::Item& it = src.items.at(i);
    if (it.offset < 0) return load_image(it.path);
    // CIFAR-10 record: label byte, then 1024 R, 1024 G, 1024 B bytes (32x32 row-major planes)
    std::ifstream f(it.path, std::ios::binary);
    uint8_t rec[kCifarRecord];
    f.seekg(it.offset);
    f.read(reinterpret_cast<char*>(rec), kCifarRecord);
    if (!f) throw Error(it.path + ": truncated CIFAR-10 record at byte " + std::to_string(it.offset));
    Image img;
    img.w = img.h = 32;
    img.rgb.resize(32 * 32 * 3);
    for (int p = 0; p < 1024; p++)
        for (int c = 0; c < 3; c++) img.rgb[p * 3 + c] = rec[1 + c * 1024 + p];
    return img;
}

Split split_indices(int64_t n, double val_fraction, uint64_t seed) {
    std::vector<int64_t> idx(n);
    for (int64_t i = 0; i < n; i++) idx[i] = i;
    Rng rng(mix_seed(seed, 0x5EED5EEDull));
    for (int64_t i = n - 1; i > 0; i--) std::swap(idx[i], idx[int64_t(rng.next() % uint64_t(i + 1))]);
    int64_t nv = std::clamp<int64_t>(int64_t(double(n) * val_fraction + 0.5), 0, n);
    Split s;
    s.val.assign(idx.begin(), idx.begin() + nv);
    s.train.assign(idx.begin() + nv, idx.end());
    std::sort(s.val.begin(), s.val.end());
    std::sort(s.train.begin(), s.train.end());
    return s;
}

// --- token dataset file ------------------------------------------------------------------------------------
// Layout: "IGPTTOK1", u64 key, i64 n, i32 h, i32 w, i32 k, i32 0, then u16 tokens (n, h, w), i16 labels (n).
namespace {
constexpr char kTokMagic[8] = {'I', 'G', 'P', 'T', 'T', 'O', 'K', '1'};
constexpr size_t kTokHeader = 40;
}  // namespace

TokenDataset::TokenDataset(const std::string& path) : path_(path) {
    int fd = ::open(path.c_str(), O_RDONLY);
    if (fd < 0) throw Error(path + ": cannot open token cache");
    struct stat st {};
    ::fstat(fd, &st);
    map_len_ = size_t(st.st_size);
    if (map_len_ < kTokHeader) {
        ::close(fd);
        throw Error(path + ": token cache is truncated; delete it to rebuild");
    }
    map_ = ::mmap(nullptr, map_len_, PROT_READ, MAP_SHARED, fd, 0);
    ::close(fd);
    if (map_ == MAP_FAILED) {
        map_ = nullptr;
        throw Error(path + ": cannot memory-map token cache");
    }
    const uint8_t* b = static_cast<const uint8_t*>(map_);
    if (std::memcmp(b, kTokMagic, 8) != 0) {
        unmap();
        throw Error(path + ": not an igpt token cache; delete it to rebuild");
    }
    int32_t dims[4];
    std::memcpy(&key_, b + 8, 8);
    std::memcpy(&n_, b + 16, 8);
    std::memcpy(dims, b + 24, 16);
    h_ = dims[0];
    w_ = dims[1];
    k_ = dims[2];
    const size_t need = kTokHeader + size_t(n_) * h_ * w_ * 2 + size_t(n_) * 2;
    if (n_ < 0 || h_ <= 0 || w_ <= 0 || size_t(n_) > (map_len_ - kTokHeader) / (2 * (size_t(h_) * w_ + 1)) || map_len_ != need) {
        unmap();
        throw Error(path + ": token cache has the wrong size; delete it to rebuild");
    }
    tokens_ = reinterpret_cast<const uint16_t*>(b + kTokHeader);
    labels_ = reinterpret_cast<const int16_t*>(b + kTokHeader + size_t(n_) * h_ * w_ * 2);
}

TokenDataset::~TokenDataset() { unmap(); }

void TokenDataset::unmap() {
    if (map_) ::munmap(map_, map_len_);
    map_ = nullptr;
}

TokenDataset::TokenDataset(TokenDataset&& o) noexcept { *this = std::move(o); }

TokenDataset& TokenDataset::operator=(TokenDataset&& o) noexcept {
    if (this != &o) {
        unmap();
        path_ = std::move(o.path_);
        map_ = o.map_;
        map_len_ = o.map_len_;
        n_ = o.n_;
        h_ = o.h_;
        w_ = o.w_;
        k_ = o.k_;
        key_ = o.key_;
        tokens_ = o.tokens_;
        labels_ = o.labels_;
        o.map_ = nullptr;
        o.n_ = 0;
    }
    return *this;
}

void TokenDataset::crop(int64_t i, int32_t oy, int32_t ox, bool flip, int32_t oh, int32_t ow, int32_t* out) const {
    const uint16_t* img = image(i);
    for (int32_t y = 0; y < oh; y++) {
        const uint16_t* row = img + size_t(oy + y) * w_ + ox;
        int32_t* o = out + size_t(y) * ow;
        if (flip)
            for (int32_t x = 0; x < ow; x++) o[x] = row[ow - 1 - x];
        else
            for (int32_t x = 0; x < ow; x++) o[x] = row[x];
    }
}

TokenDataset load_token_dataset(const ImageSource& src, const std::vector<int64_t>& indices, const Palette& pal,
                                const TokenBuildParams& p, TokenBuildInfo* info) {
    if (pal.k() < 1 || pal.k() > 65536) throw Error("token dataset: palette must have 1..65536 colours");
    uint64_t key = hash_str("igpt-tokens-v1", 1469598103934665603ull);
    key = hash_bytes(pal.rgb().data(), pal.rgb().size(), key);
    int32_t dims[2] = {p.h, p.w};
    key = hash_bytes(dims, sizeof dims, key);
    key = hash_bytes(&src.fingerprint, 8, key);
    key = hash_bytes(indices.data(), indices.size() * sizeof(int64_t), key);
    char name[64];
    std::snprintf(name, sizeof name, "tokens-%016llx.bin", (unsigned long long)key);
    fs::path dir = p.cache_dir.empty() ? fs::path(".") : fs::path(p.cache_dir);
    const std::string cache_path = (dir / name).string();
    TokenBuildInfo local;
    TokenBuildInfo& inf = info ? *info : local;
    inf.cache_path = cache_path;

    if (fs::exists(cache_path)) {
        try {
            TokenDataset d(cache_path);
            if (d.key() == key && d.h() == p.h && d.w() == p.w && d.k() == pal.k()) {
                inf.from_cache = true;
                inf.images = d.size();
                return d;
            }
        } catch (const Error&) {
            // unreadable cache: rebuild it below
        }
    }

    auto warn = p.warn ? p.warn : [](const std::string& m) { std::fprintf(stderr, "igpt: warning: %s\n", m.c_str()); };
    const int64_t n = int64_t(indices.size());
    const size_t npx = size_t(p.h) * p.w;
    std::vector<uint16_t> tokens(size_t(n) * npx);
    std::vector<int16_t> labels(n);
    std::vector<uint8_t> ok(n, 0);
    std::vector<std::string> errors(n);
    ThreadPool pool(p.threads);
    constexpr int64_t kChunk = 512;
    for (int64_t c0 = 0; c0 < n; c0 += kChunk) {
        const int64_t c1 = std::min(n, c0 + kChunk);
        pool.parallel_for(c1 - c0, 1, [&](int64_t b, int64_t e, int32_t) {
            std::vector<int32_t> q(npx);
            for (int64_t j = c0 + b; j < c0 + e; j++) {
                try {
                    Image img = prepare_image(read_item(src, size_t(indices[j])), p.h, p.w);
                    pal.quantize(img.rgb.data(), npx, q.data());
                    for (size_t t = 0; t < npx; t++) tokens[size_t(j) * npx + t] = uint16_t(q[t]);
                    labels[j] = int16_t(src.items[indices[j]].label);
                    ok[j] = 1;
                } catch (const std::exception& ex) {
                    errors[j] = ex.what();
                }
            }
        });
        if (p.progress) p.progress(c1, n);
    }
    // compact: drop the unreadable ones, with one warning line each
    int64_t m = 0;
    for (int64_t j = 0; j < n; j++) {
        if (!ok[j]) {
            warn("skipping unreadable image " + errors[j]);
            inf.skipped++;
            continue;
        }
        if (m != j) {
            std::memmove(&tokens[size_t(m) * npx], &tokens[size_t(j) * npx], npx * 2);
            labels[m] = labels[j];
        }
        m++;
    }
    inf.images = m;
    std::vector<uint8_t> file(kTokHeader + size_t(m) * npx * 2 + size_t(m) * 2);
    std::memcpy(file.data(), kTokMagic, 8);
    std::memcpy(file.data() + 8, &key, 8);
    std::memcpy(file.data() + 16, &m, 8);
    int32_t hdr[4] = {p.h, p.w, pal.k(), 0};
    std::memcpy(file.data() + 24, hdr, 16);
    std::memcpy(file.data() + kTokHeader, tokens.data(), size_t(m) * npx * 2);
    std::memcpy(file.data() + kTokHeader + size_t(m) * npx * 2, labels.data(), size_t(m) * 2);
    std::error_code ec;
    fs::create_directories(dir, ec);
    write_file_atomic(cache_path, file.data(), file.size());
    return TokenDataset(cache_path);
}

std::vector<uint8_t> sample_pixels(const ImageSource& src, const std::vector<int64_t>& indices, int32_t h,
                                   int32_t w, int64_t max_pixels, uint64_t seed, int32_t threads) {
    // enough images for max_pixels, a few pixels from each of many images (colour variety)
    const int64_t npx = int64_t(h) * w;
    const int64_t per_image = std::max<int64_t>(1, std::min<int64_t>(npx, 64));
    const int64_t n_images = std::min<int64_t>(int64_t(indices.size()), (max_pixels + per_image - 1) / per_image);
    std::vector<int64_t> pick(indices);
    Rng rng(mix_seed(seed, 0xC0103ull));
    for (int64_t i = 0; i < n_images; i++)
        std::swap(pick[i], pick[i + int64_t(rng.next() % uint64_t(pick.size() - i))]);
    std::vector<std::vector<uint8_t>> per(n_images);
    ThreadPool pool(threads);
    pool.parallel_for(n_images, 16, [&](int64_t b, int64_t e, int32_t) {
        for (int64_t i = b; i < e; i++) {
            try {
                Image img = prepare_image(read_item(src, size_t(pick[i])), h, w);
                Rng r(mix_seed(seed, uint64_t(i)));
                per[i].resize(per_image * 3);
                for (int64_t k = 0; k < per_image; k++) {
                    const size_t px = size_t(r.next() % uint64_t(npx));
                    std::memcpy(&per[i][k * 3], &img.rgb[px * 3], 3);
                }
            } catch (const std::exception&) {
            }
        }
    });
    std::vector<uint8_t> out;
    for (auto& v : per) out.insert(out.end(), v.begin(), v.end());
    if (int64_t(out.size()) > max_pixels * 3) out.resize(size_t(max_pixels) * 3);
    if (out.empty()) throw Error(src.root + ": no readable images to train a palette on");
    return out;
}

// --- batches -----------------------------------------------------------------------------------------------
BatchSampler::BatchSampler(const TokenDataset& data, uint64_t seed, int32_t h, int32_t w, bool flip)
    : data_(data), seed_(seed), h_(h), w_(w), flip_(flip) {
    if (data.size() == 0) throw Error("no training images");
    if (data.h() < h || data.w() < w) throw Error("training images are smaller than the model's resolution");
}

const std::vector<int64_t>& BatchSampler::perm(int64_t epoch) {
    if (epoch != perm_epoch_) {
        const int64_t n = data_.size();
        perm_.resize(n);
        for (int64_t i = 0; i < n; i++) perm_[i] = i;
        Rng rng(mix_seed(seed_, 0xE90C0000ull + uint64_t(epoch)));
        for (int64_t i = n - 1; i > 0; i--) std::swap(perm_[i], perm_[int64_t(rng.next() % uint64_t(i + 1))]);
        perm_epoch_ = epoch;
    }
    return perm_;
}

void BatchSampler::next(DataCursor& cur, int32_t B, int32_t* out) {
    const int64_t n = data_.size();
    for (int32_t b = 0; b < B; b++) {
        if (cur.pos >= n) {
            cur.epoch++;
            cur.pos = 0;
        }
        const int64_t img = perm(cur.epoch)[cur.pos];
        Rng rng(mix_seed(seed_, uint64_t(cur.epoch * n + cur.pos)));  // this sample's augmentation
        const int32_t oy = int32_t(rng.next() % uint64_t(data_.h() - h_ + 1));
        const int32_t ox = int32_t(rng.next() % uint64_t(data_.w() - w_ + 1));
        const bool flip = flip_ && (rng.next() & 1);
        data_.crop(img, oy, ox, flip, h_, w_, out + size_t(b) * h_ * w_);
        cur.pos++;
    }
}

std::vector<int32_t> centre_tokens(const TokenDataset& data, int64_t first, int64_t count, int32_t h, int32_t w) {
    count = std::max<int64_t>(0, std::min(count, data.size() - first));
    std::vector<int32_t> out(size_t(count) * h * w);
    const int32_t oy = (data.h() - h) / 2, ox = (data.w() - w) / 2;
    for (int64_t i = 0; i < count; i++) data.crop(first + i, oy, ox, false, h, w, out.data() + size_t(i) * h * w);
    return out;
}

}  // namespace igpt::train
