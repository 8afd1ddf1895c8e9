// TensorFlow tensor bundles (tf.train.Saver V2 checkpoints), read without TensorFlow.
//
// prefix.index is a LevelDB-format table (TensorFlow's copy of it, tensorflow/core/lib/io/table):
//   footer (last 48 bytes): metaindex handle, index handle (each varint64 offset + varint64 size), zero
//   padding to 40 bytes, fixed64 magic 0xdb4775248b80fb57.
//   block: entries { varint32 shared, varint32 non_shared, varint32 value_len, key[non_shared], value },
//   then fixed32 restart offsets and a fixed32 count; each block is followed by a 1-byte compression type
//   (0 = none) and a fixed32 masked crc32c of contents + type byte.
//   The index block maps a separator key to the handle of each data block.
// Keys in the data blocks: "" -> BundleHeaderProto {1 num_shards, 2 endianness (0 little), 3 version};
// every other key -> BundleEntryProto {1 dtype, 2 shape (TensorShapeProto: 2 dim {1 size}), 3 shard_id,
// 4 offset, 5 size, 6 crc32c (fixed32, masked), 7 slices}. Tensor bytes: prefix.data-SSSSS-of-NNNNN.
#include <cstdio>
#include <cstring>

#include "error.h"
#include "formats.h"

namespace igpt::imp {

namespace {

constexpr uint64_t kTableMagic = 0xdb4775248b80fb57ull;
constexpr size_t kFooterSize = 48;
constexpr size_t kBlockTrailerSize = 5;

struct Reader {  // bounds-checked cursor over bytes; throws naming `what`
    const uint8_t* p;
    const uint8_t* end;
    const std::string& what;

    bool done() const { return p >= end; }
    [[noreturn]] void fail(const std::string& why) const { throw Error(what + " is corrupt: " + why); }
    uint64_t varint() {
        uint64_t v = 0;
        for (int shift = 0; shift < 64; shift += 7) {
            if (p >= end) fail("a varint runs past its end");
            const uint8_t b = *p++;
            v |= uint64_t(b & 0x7f) << shift;
            if (!(b & 0x80)) return v;
        }
        fail("a varint is longer than 10 bytes");
    }
    uint32_t fixed32() {
        if (end - p < 4) fail("a fixed32 runs past its end");
        uint32_t v = uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
        p += 4;
        return v;
    }
    const uint8_t* take(uint64_t n) {
        if (uint64_t(end - p) < n) fail("a field runs past its end");
        const uint8_t* r = p;
        p += n;
        return r;
    }
};

struct Handle {
    uint64_t offset = 0, size = 0;
};

// Protobuf wire format: calls on_field(field, wire_type, reader) for each field; skips what it ignores.
template <class F>
void parse_proto(const uint8_t* data, size_t n, const std::string& what, F on_field) {
    Reader r{data, data + n, what};
    while (!r.done()) {
        const uint64_t tag = r.varint();
        const uint32_t field = uint32_t(tag >> 3), wire = uint32_t(tag & 7);
        if (!on_field(field, wire, r)) {  // not consumed: skip it
            switch (wire) {
                case 0: r.varint(); break;
                case 1: r.take(8); break;
                case 2: r.take(r.varint()); break;
                case 5: r.take(4); break;
                default: r.fail("unsupported protobuf wire type " + std::to_string(wire));
            }
        }
    }
}

class Table {
public:
    explicit Table(const std::string& path) : path_(path), file_(read_whole(path, uint64_t(1) << 31)) {
        if (file_.size() < kFooterSize)
            throw Error(path + " is truncated or not a TensorFlow checkpoint index (" + std::to_string(file_.size()) +
                        " bytes, a table footer alone is 48)");
        const uint8_t* f = file_.data() + file_.size() - kFooterSize;
        uint64_t magic = 0;
        for (int i = 7; i >= 0; --i) magic = (magic << 8) | f[40 + i];
        if (magic != kTableMagic)
            throw Error(path + " is not a TensorFlow checkpoint index (bad table magic; truncated or another format)");
        Reader r{f, f + 40, path_};
        meta_.offset = r.varint();
        meta_.size = r.varint();
        index_.offset = r.varint();
        index_.size = r.varint();
    }

    // Calls fn(key, value) for every entry of every data block, in order.
    template <class F>
    void for_each(F fn) const {
        const std::vector<uint8_t> index = block(index_, "the index block");
        entries(index, "the index block", [&](const std::string& key, const uint8_t* v, size_t n) {
            Reader r{v, v + n, path_};
            Handle h;
            h.offset = r.varint();
            h.size = r.varint();
            const std::vector<uint8_t> data = block(h, "data block before key '" + key + "'");
            entries(data, "a data block", [&](const std::string& k, const uint8_t* dv, size_t dn) { fn(k, dv, dn); });
        });
    }

private:
    std::vector<uint8_t> block(const Handle& h, const std::string& which) const {
        const uint64_t n = file_.size() - kFooterSize;
        if (h.offset > n || h.size > n - h.offset || kBlockTrailerSize > n - h.offset - h.size)
            throw Error(path_ + " is truncated or corrupt: " + which + " (bytes " + std::to_string(h.offset) + ".." +
                        std::to_string(h.offset + h.size + kBlockTrailerSize) + ") lies outside the file");
        const uint8_t* b = file_.data() + h.offset;
        const uint8_t type = b[h.size];
        uint32_t stored;
        std::memcpy(&stored, b + h.size + 1, 4);
        if (crc32c_mask(crc32c(b, size_t(h.size) + 1)) != stored)
            throw Error(path_ + " is corrupt: " + which + " fails its checksum (crc32c)");
        if (type != 0)
            throw Error(path_ + ": " + which + " is compressed (type " + std::to_string(type) + (type == 1 ? ", Snappy" : "") +
                        "); only uncompressed index blocks are supported, which is what TensorFlow writes");
        return std::vector<uint8_t>(b, b + h.size);
    }

    template <class F>
    void entries(const std::vector<uint8_t>& b, const std::string& which, F fn) const {
        const std::string what = path_ + " (" + which + ")";
        if (b.size() < 4) throw Error(what + " is corrupt: block shorter than its restart count");
        uint32_t num_restarts;
        std::memcpy(&num_restarts, b.data() + b.size() - 4, 4);
        if (uint64_t(num_restarts) + 1 > b.size() / 4) throw Error(what + " is corrupt: bad restart count");
        const size_t limit = b.size() - 4 * (size_t(num_restarts) + 1);
        Reader r{b.data(), b.data() + limit, what};
        std::string key;
        while (!r.done()) {
            const uint64_t shared = r.varint(), non_shared = r.varint(), value_len = r.varint();
            if (shared > key.size()) r.fail("an entry shares more key bytes than the previous key has");
            const uint8_t* kb = r.take(non_shared);
            const uint8_t* vb = r.take(value_len);
            key.resize(size_t(shared));
            key.append(reinterpret_cast<const char*>(kb), size_t(non_shared));
            fn(key, vb, size_t(value_len));
        }
    }

    std::string path_;
    std::vector<uint8_t> file_;
    Handle meta_, index_;
};

SrcType tf_type(uint64_t dt, std::string& name) {
    switch (dt) {
        case 1: name = "DT_FLOAT"; return SrcType::F32;
        case 2: name = "DT_DOUBLE"; return SrcType::F64;
        case 14: name = "DT_BFLOAT16"; return SrcType::BF16;
        case 19: name = "DT_HALF"; return SrcType::F16;
        case 3: name = "DT_INT32"; break;
        case 7: name = "DT_STRING"; break;
        case 9: name = "DT_INT64"; break;
        case 10: name = "DT_BOOL"; break;
        default: name = "DT_" + std::to_string(dt); break;
    }
    return SrcType::Other;
}

std::string shard_name(const std::string& prefix, uint64_t shard, uint64_t num) {
    char buf[64];
    std::snprintf(buf, sizeof buf, ".data-%05llu-of-%05llu", (unsigned long long)shard, (unsigned long long)num);
    return prefix + buf;
}

}  // namespace

void add_tf_bundle(TensorSource& src, const std::string& prefix_in) {
    std::string prefix = prefix_in;
    if (prefix.size() > 6 && prefix.compare(prefix.size() - 6, 6, ".index") == 0) prefix.resize(prefix.size() - 6);
    const std::string index_path = prefix + ".index";
    const Table table(index_path);

    bool have_header = false;
    uint64_t num_shards = 0;
    struct Pending {
        std::string key;
        TensorRef ref;
        uint64_t shard = 0;
    };
    std::vector<Pending> pending;
    table.for_each([&](const std::string& key, const uint8_t* v, size_t n) {
        const std::string what = index_path + " entry '" + key + "'";
        if (key.empty()) {  // BundleHeaderProto
            uint64_t endianness = 0;
            parse_proto(v, n, what, [&](uint32_t f, uint32_t w, Reader& r) {
                if (f == 1 && w == 0) { num_shards = r.varint(); return true; }
                if (f == 2 && w == 0) { endianness = r.varint(); return true; }
                return false;
            });
            if (endianness != 0)
                throw Error(index_path + " was written on a big-endian machine; only little-endian checkpoints are supported");
            if (num_shards < 1 || num_shards > 100000) throw Error(what + " is corrupt: num_shards " + std::to_string(num_shards));
            have_header = true;
            return;
        }
        Pending p;
        p.key = key;
        uint64_t dtype = 0;
        bool sliced = false;
        parse_proto(v, n, what, [&](uint32_t f, uint32_t w, Reader& r) {
            if (f == 1 && w == 0) { dtype = r.varint(); return true; }
            if (f == 2 && w == 2) {  // TensorShapeProto
                const uint64_t len = r.varint();
                const uint8_t* s = r.take(len);
                parse_proto(s, size_t(len), what, [&](uint32_t sf, uint32_t sw, Reader& sr) {
                    if (sf == 2 && sw == 2) {  // Dim
                        const uint64_t dl = sr.varint();
                        const uint8_t* d = sr.take(dl);
                        int64_t size = 0;
                        parse_proto(d, size_t(dl), what, [&](uint32_t df, uint32_t dw, Reader& dr) {
                            if (df == 1 && dw == 0) { size = int64_t(dr.varint()); return true; }
                            return false;
                        });
                        if (size < 0) throw Error(what + " has an unknown dimension");
                        p.ref.shape.push_back(size);
                        return true;
                    }
                    if (sf == 3 && sw == 0 && sr.varint() != 0) throw Error(what + " has an unknown rank");
                    return sf == 3 && sw == 0;
                });
                return true;
            }
            if (f == 3 && w == 0) { p.shard = r.varint(); return true; }
            if (f == 4 && w == 0) { p.ref.offset = r.varint(); return true; }
            if (f == 5 && w == 0) { p.ref.size = r.varint(); return true; }
            if (f == 6 && w == 5) { p.ref.crc_masked = r.fixed32(); p.ref.has_crc = true; return true; }
            if (f == 7) sliced = true;
            return false;
        });
        p.ref.type = tf_type(dtype, p.ref.type_name);
        if (sliced) p.ref.type_name += " (partitioned variable: not supported)", p.ref.type = SrcType::Other;
        pending.push_back(std::move(p));
    });
    if (!have_header) throw Error(index_path + " lacks the bundle header entry (is it a TensorFlow V2 checkpoint?)");
    for (auto& p : pending) {
        if (p.shard >= num_shards)
            throw Error(index_path + " entry '" + p.key + "' names shard " + std::to_string(p.shard) + " of " +
                        std::to_string(num_shards));
        p.ref.file = shard_name(prefix, p.shard, num_shards);
        src.add(p.key, std::move(p.ref));
    }
}

}  // namespace igpt::imp
