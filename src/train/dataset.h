// Training data: image sources (an ImageFolder tree, a flat folder, CIFAR-10 binary batches), a seeded
// train/validation split, and the token dataset: every image decoded, prepared and quantised once, then
// cached on disk and memory-mapped, so that epochs never decode images again. Training reads random crops
// and horizontal flips of the cached tokens (cropping and mirroring commute with per-pixel quantisation).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "image.h"
#include "palette.h"

namespace igpt::train {

struct ImageSource {
    enum class Kind { Flat, ImageFolder, Cifar };
    struct Item {
        std::string path;     // image file, or the CIFAR batch file
        int64_t offset = -1;  // CIFAR: byte offset of the record (label byte + 3072 bytes)
        int32_t label = -1;   // class index, -1 = none
    };
    std::string root;
    Kind kind = Kind::Flat;
    std::vector<std::string> classes;  // label -> name
    std::vector<Item> items;           // sorted, so the order is the same on every machine
    uint64_t fingerprint = 0;          // hash of paths, sizes and modification times (for the cache key)
};

// A directory of images (flat), a directory of class subdirectories (ImageFolder; files found
// recursively), a CIFAR-10 .bin batch file, or a directory holding data_batch_*.bin. Throws igpt::Error
// when nothing usable is found.
ImageSource scan_source(const std::string& path);
// Decodes one item to RGB; throws igpt::Error when it is unreadable.
Image read_item(const ImageSource& src, size_t i);

// Seeded split of [0, n): `val` gets round(n * val_fraction) indices (both lists sorted).
struct Split {
    std::vector<int64_t> train, val;
};
Split split_indices(int64_t n, double val_fraction, uint64_t seed);

// Tokens of n images of h x w pixels, memory-mapped from the cache file.
class TokenDataset {
public:
    TokenDataset() = default;
    explicit TokenDataset(const std::string& path);  // maps the file; throws igpt::Error
    ~TokenDataset();
    TokenDataset(TokenDataset&& o) noexcept;
    TokenDataset& operator=(TokenDataset&& o) noexcept;
    TokenDataset(const TokenDataset&) = delete;
    TokenDataset& operator=(const TokenDataset&) = delete;

    int64_t size() const { return n_; }
    int32_t h() const { return h_; }
    int32_t w() const { return w_; }
    int32_t k() const { return k_; }
    uint64_t key() const { return key_; }
    const uint16_t* image(int64_t i) const { return tokens_ + size_t(i) * h_ * w_; }  // (h, w)
    int32_t label(int64_t i) const { return labels_[i]; }
    const std::string& path() const { return path_; }

    // The (oh, ow) window at (oy, ox), mirrored left-right if flip, as int32 tokens.
    void crop(int64_t i, int32_t oy, int32_t ox, bool flip, int32_t oh, int32_t ow, int32_t* out) const;

private:
    void unmap();
    std::string path_;
    void* map_ = nullptr;
    size_t map_len_ = 0;
    int64_t n_ = 0;
    int32_t h_ = 0, w_ = 0, k_ = 0;
    uint64_t key_ = 0;
    const uint16_t* tokens_ = nullptr;
    const int16_t* labels_ = nullptr;
};

struct TokenBuildInfo {
    std::string cache_path;
    bool from_cache = false;
    int64_t images = 0;   // tokenised
    int64_t skipped = 0;  // unreadable, skipped with a warning
};
struct TokenBuildParams {
    int32_t h = 32, w = 32;   // stored resolution (prepare_image: centre crop to aspect, resize)
    std::string cache_dir;    // created if missing
    int32_t threads = 0;
    std::function<void(const std::string&)> warn;             // one line per unreadable file (default stderr)
    std::function<void(int64_t done, int64_t total)> progress;  // optional
};
// Opens the cache for (source, indices, palette, resolution) or builds it. The cache file's name is a
// hash of everything that determines its contents, so another palette or resolution never reuses it.
TokenDataset load_token_dataset(const ImageSource& src, const std::vector<int64_t>& indices, const Palette& pal,
                                const TokenBuildParams& p, TokenBuildInfo* info = nullptr);

// Up to max_pixels RGB pixels sampled (seeded) from the prepared (h x w) images `indices` of src, for
// training a palette. Unreadable files are skipped silently (the token build reports them).
std::vector<uint8_t> sample_pixels(const ImageSource& src, const std::vector<int64_t>& indices, int32_t h,
                                   int32_t w, int64_t max_pixels, uint64_t seed, int32_t threads);

// Position in the stream of training images: epoch e visits a seeded permutation of the dataset.
struct DataCursor {
    int64_t epoch = 0;
    int64_t pos = 0;  // index into the epoch's permutation
};

// Fills batches of (h, w) training crops: random crop position and horizontal flip, both drawn from a
// generator seeded by (seed, sample number), so a batch depends only on the cursor, never on history.
class BatchSampler {
public:
    BatchSampler(const TokenDataset& data, uint64_t seed, int32_t h, int32_t w, bool flip);
    void next(DataCursor& cur, int32_t B, int32_t* out /* (B, h*w) */);

private:
    const std::vector<int64_t>& perm(int64_t epoch);
    const TokenDataset& data_;
    uint64_t seed_;
    int32_t h_, w_;
    bool flip_;
    int64_t perm_epoch_ = -1;
    std::vector<int64_t> perm_;
};

// Centre crops of images [first, first+count) as int32 tokens (count, h*w): evaluation data.
std::vector<int32_t> centre_tokens(const TokenDataset& data, int64_t first, int64_t count, int32_t h, int32_t w);

uint64_t hash_bytes(const void* data, size_t n, uint64_t h = 1469598103934665603ull);  // FNV-1a 64
uint64_t mix_seed(uint64_t a, uint64_t b);                                             // SplitMix-style

}  // namespace igpt::train
