#include "model_loader/gguf.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>

#include <fmt/format.h>

#include "common/error.h"

namespace pagedllm {
namespace {

constexpr uint32_t kGgufMagic = 0x46554747;  // "GGUF" read as a little-endian u32
constexpr uint64_t kMinAlignment = 8;          // general.alignment: the GGUF specification's "a multiple of 8"
constexpr int kMaxDims = 4;
constexpr size_t kMaxTensorNameLength = 63;   // GGML_MAX_NAME - 1
constexpr int kMaxArrayNesting = 8;

// Sequential, bounds-checked reads from the file image. Every failure names the field and the byte offset.
class Cursor {
 public:
  Cursor(std::span<const uint8_t> bytes, const std::string& file) : bytes_(bytes), file_(file) {}

  size_t offset() const { return offset_; }
  size_t remaining() const { return bytes_.size() - offset_; }

  [[noreturn]] void error_at(size_t offset, std::string_view field, std::string_view what) const {
    fail("{}: {} at byte offset {}: {}", file_, field, offset, what);
  }

  template <typename T>
  T read(std::string_view field) {
    if (remaining() < sizeof(T)) {
      error_at(offset_, field, fmt::format("file ends after {} bytes, {} more needed", bytes_.size(),
                                           sizeof(T) - remaining()));
    }
    T value;
    std::memcpy(&value, bytes_.data() + offset_, sizeof(T));
    offset_ += sizeof(T);
    return value;
  }

  std::string read_string(std::string_view field) {
    const size_t at = offset_;
    const uint64_t length = read<uint64_t>(field);
    if (length > remaining()) {
      error_at(at, field, fmt::format("string length {} runs past the end of the file ({} bytes left)", length,
                                      remaining()));
    }
    std::string s(reinterpret_cast<const char*>(bytes_.data() + offset_), length);
    offset_ += length;
    return s;
  }

 private:
  std::span<const uint8_t> bytes_;
  const std::string& file_;
  size_t offset_ = 0;
};

size_t value_type_size(GgufValueType type) {
  switch (type) {
    case GgufValueType::UINT8: case GgufValueType::INT8: case GgufValueType::BOOL: return 1;
    case GgufValueType::UINT16: case GgufValueType::INT16: return 2;
    case GgufValueType::UINT32: case GgufValueType::INT32: case GgufValueType::FLOAT32: return 4;
    case GgufValueType::UINT64: case GgufValueType::INT64: case GgufValueType::FLOAT64: return 8;
    case GgufValueType::STRING: return 8;  // at least the length prefix
    case GgufValueType::ARRAY: return 12;  // at least elem type + count
  }
  return 1;
}

bool valid_value_type(uint32_t id) { return id <= static_cast<uint32_t>(GgufValueType::FLOAT64); }

// `field` names the value in error messages; it is built once per key or array, not per element, because
// vocabulary arrays hold hundreds of thousands of elements.
GgufValue read_value(Cursor& cursor, GgufValueType type, const std::string& key, const std::string& field,
                     int depth);

GgufValue read_scalar(Cursor& cursor, GgufValueType type, const std::string& field) {
  GgufValue v;
  v.type = type;
  switch (type) {
    case GgufValueType::UINT8: v.integer = cursor.read<uint8_t>(field); break;
    case GgufValueType::INT8: v.integer = cursor.read<int8_t>(field); break;
    case GgufValueType::UINT16: v.integer = cursor.read<uint16_t>(field); break;
    case GgufValueType::INT16: v.integer = cursor.read<int16_t>(field); break;
    case GgufValueType::UINT32: v.integer = cursor.read<uint32_t>(field); break;
    case GgufValueType::INT32: v.integer = cursor.read<int32_t>(field); break;
    case GgufValueType::UINT64: v.integer = static_cast<int64_t>(cursor.read<uint64_t>(field)); break;
    case GgufValueType::INT64: v.integer = cursor.read<int64_t>(field); break;
    case GgufValueType::FLOAT32: v.real = cursor.read<float>(field); break;
    case GgufValueType::FLOAT64: v.real = cursor.read<double>(field); break;
    case GgufValueType::BOOL: v.boolean = cursor.read<uint8_t>(field) != 0; break;
    case GgufValueType::STRING: v.string = cursor.read_string(field); break;
    case GgufValueType::ARRAY: break;  // handled by read_value
  }
  return v;
}

GgufValue read_array(Cursor& cursor, const std::string& key, int depth) {
  const std::string field = fmt::format("array value of metadata key '{}'", key);
  if (depth > kMaxArrayNesting) cursor.error_at(cursor.offset(), field, "arrays nested too deeply");
  const size_t type_at = cursor.offset();
  const uint32_t elem_id = cursor.read<uint32_t>(field + " (element type)");
  if (!valid_value_type(elem_id)) {
    cursor.error_at(type_at, field, fmt::format("unknown element type {}", elem_id));
  }
  const auto elem_type = static_cast<GgufValueType>(elem_id);
  const size_t count_at = cursor.offset();
  const uint64_t count = cursor.read<uint64_t>(field + " (count)");
  // Each element needs at least this many bytes: an absurd count is caught before any allocation.
  const size_t min_size = value_type_size(elem_type);
  if (count > cursor.remaining() / min_size) {
    cursor.error_at(count_at, field,
                    fmt::format("{} elements of type {} cannot fit in the {} bytes left in the file", count,
                                value_type_name(elem_type), cursor.remaining()));
  }
  GgufValue v;
  v.type = GgufValueType::ARRAY;
  v.array = std::make_shared<GgufArray>();
  v.array->elem_type = elem_type;
  v.array->items.reserve(count);
  for (uint64_t i = 0; i < count; ++i) {
    v.array->items.push_back(read_value(cursor, elem_type, key, field, depth + 1));
  }
  return v;
}

GgufValue read_value(Cursor& cursor, GgufValueType type, const std::string& key, const std::string& field,
                     int depth) {
  if (type == GgufValueType::ARRAY) return read_array(cursor, key, depth);
  return read_scalar(cursor, type, field);
}

uint64_t pad_to(uint64_t x, uint64_t alignment) { return (x + alignment - 1) / alignment * alignment; }

}  // namespace

std::string_view value_type_name(GgufValueType type) {
  switch (type) {
    case GgufValueType::UINT8: return "u8";
    case GgufValueType::INT8: return "i8";
    case GgufValueType::UINT16: return "u16";
    case GgufValueType::INT16: return "i16";
    case GgufValueType::UINT32: return "u32";
    case GgufValueType::INT32: return "i32";
    case GgufValueType::FLOAT32: return "f32";
    case GgufValueType::BOOL: return "bool";
    case GgufValueType::STRING: return "string";
    case GgufValueType::ARRAY: return "array";
    case GgufValueType::UINT64: return "u64";
    case GgufValueType::INT64: return "i64";
    case GgufValueType::FLOAT64: return "f64";
  }
  return "?";
}

bool GgufValue::is_integer() const {
  switch (type) {
    case GgufValueType::UINT8: case GgufValueType::INT8: case GgufValueType::UINT16: case GgufValueType::INT16:
    case GgufValueType::UINT32: case GgufValueType::INT32: case GgufValueType::UINT64: case GgufValueType::INT64:
      return true;
    default: return false;
  }
}

bool GgufValue::is_unsigned() const {
  return type == GgufValueType::UINT8 || type == GgufValueType::UINT16 || type == GgufValueType::UINT32 ||
         type == GgufValueType::UINT64;
}

std::string GgufTensorInfo::shape_string() const {
  std::string s = "[";
  for (int i = 0; i < n_dims; ++i) s += fmt::format("{}{}", i ? ", " : "", ne[i]);
  return s + "]";
}

std::unique_ptr<GgufFile> GgufFile::open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("{}: cannot open model file: {}", path, std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    fail("{}: cannot stat: {}", path, std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    fail("{}: not a regular file", path);
  }
  const size_t size = static_cast<size_t>(st.st_size);
  if (size < 24) {
    ::close(fd);
    fail("{}: file is {} bytes, too small for a GGUF header (24 bytes)", path, size);
  }
  void* mapping = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  const int map_errno = errno;
  ::close(fd);
  if (mapping == MAP_FAILED) fail("{}: cannot mmap: {}", path, std::strerror(map_errno));
  std::unique_ptr<GgufFile> file(new GgufFile());
  file->path_ = path;
  file->mapping_ = mapping;
  file->mapping_size_ = size;
  file->bytes_ = std::span<const uint8_t>(static_cast<const uint8_t*>(mapping), size);
  file->parse();
  return file;
}

std::unique_ptr<GgufFile> GgufFile::from_memory(std::span<const uint8_t> bytes, std::string name) {
  std::unique_ptr<GgufFile> file(new GgufFile());
  file->path_ = std::move(name);
  file->bytes_ = bytes;
  file->parse();
  return file;
}

GgufFile::~GgufFile() {
  if (mapping_ != nullptr) ::munmap(mapping_, mapping_size_);
}

void GgufFile::parse() {
  Cursor cursor(bytes_, path_);
  const uint32_t magic = cursor.read<uint32_t>("magic");
  if (magic != kGgufMagic) {
    cursor.error_at(0, "magic", fmt::format("expected \"GGUF\" (0x{:08x}), found 0x{:08x}: not a GGUF file",
                                            kGgufMagic, magic));
  }
  version_ = cursor.read<uint32_t>("version");
  if (version_ != 2 && version_ != 3) {
    std::string why = fmt::format("unsupported GGUF version {} (supported: 2, 3)", version_);
    const uint32_t byte_swapped = __builtin_bswap32(version_);
    if (version_ == 0) {
      why += "; no GGUF version 0 exists, so the header is damaged";
    } else if (version_ == 1) {
      why += "; version 1 files are obsolete, reconvert the model";
    } else if (byte_swapped >= 1 && byte_swapped <= 3) {
      why += fmt::format("; this is version {} written big-endian, which is not supported", byte_swapped);
    } else {
      why += "; the header is damaged, or this is not a model file";
    }
    cursor.error_at(4, "version", why);
  }
  const int64_t tensor_count = cursor.read<int64_t>("tensor count");
  const int64_t kv_count = cursor.read<int64_t>("metadata count");
  // A metadata record is at least 8 (key length) + 4 (type) + 1 bytes, a tensor info at least 8 + 4 + 8 + 4 + 8.
  if (tensor_count < 0 || static_cast<uint64_t>(tensor_count) > bytes_.size() / 32) {
    cursor.error_at(8, "tensor count", fmt::format("{} tensors cannot fit in a {}-byte file", tensor_count,
                                                   bytes_.size()));
  }
  if (kv_count < 0 || static_cast<uint64_t>(kv_count) > bytes_.size() / 13) {
    cursor.error_at(16, "metadata count", fmt::format("{} metadata entries cannot fit in a {}-byte file",
                                                      kv_count, bytes_.size()));
  }

  metadata_.reserve(static_cast<size_t>(kv_count));
  size_t alignment_at = 0;  // where general.alignment's value lies, for error messages
  for (int64_t i = 0; i < kv_count; ++i) {
    const size_t key_at = cursor.offset();
    std::string key = cursor.read_string(fmt::format("key of metadata entry {}", i));
    const size_t type_at = cursor.offset();
    if (key == "general.alignment") alignment_at = type_at + 4;
    const uint32_t type_id = cursor.read<uint32_t>(fmt::format("value type of metadata key '{}'", key));
    if (!valid_value_type(type_id)) {
      cursor.error_at(type_at, fmt::format("value type of metadata key '{}'", key),
                      fmt::format("unknown type id {} (valid: 0..12)", type_id));
    }
    GgufValue value = read_value(cursor, static_cast<GgufValueType>(type_id), key,
                                 fmt::format("value of metadata key '{}'", key), 0);
    if (metadata_index_.count(key) != 0) {
      cursor.error_at(key_at, "metadata key", fmt::format("duplicate key '{}'", key));
    }
    metadata_index_.emplace(key, metadata_.size());
    metadata_.emplace_back(std::move(key), std::move(value));
  }

  if (const GgufValue* alignment = find("general.alignment")) {
    if (alignment->type != GgufValueType::UINT32) {
      cursor.error_at(alignment_at, "metadata key 'general.alignment'",
                      fmt::format("has type {}, expected u32", value_type_name(alignment->type)));
    }
    const auto a = static_cast<uint64_t>(alignment->integer);
    // llama.cpp accepts any power of two; the GGUF specification requires a multiple of 8 as well, which is what
    // keeps every tensor aligned for its element type (an f32 row at an odd address cannot be read as floats).
    if (a < kMinAlignment || (a & (a - 1)) != 0) {
      cursor.error_at(alignment_at, "metadata key 'general.alignment'",
                      fmt::format("is {}, expected a power of two of at least {} (the GGUF specification requires "
                                  "a multiple of {}, and tensor data aligned to less cannot be read in place)",
                                  a, kMinAlignment, kMinAlignment));
    }
    alignment_ = static_cast<uint32_t>(a);
  }

  tensors_.reserve(static_cast<size_t>(tensor_count));
  for (int64_t i = 0; i < tensor_count; ++i) {
    GgufTensorInfo t;
    const size_t name_at = cursor.offset();
    t.name = cursor.read_string(fmt::format("name of tensor {}", i));
    const std::string field = fmt::format("tensor '{}'", t.name);
    if (t.name.size() > kMaxTensorNameLength) {
      cursor.error_at(name_at, field, fmt::format("name is {} bytes long (at most {})", t.name.size(),
                                                  kMaxTensorNameLength));
    }
    if (tensor_index_.count(t.name) != 0) cursor.error_at(name_at, field, "duplicate tensor name");
    const size_t dims_at = cursor.offset();
    const uint32_t n_dims = cursor.read<uint32_t>(field + " (dimension count)");
    if (n_dims == 0 || n_dims > kMaxDims) {
      cursor.error_at(dims_at, field, fmt::format("{} dimensions (must be 1..{})", n_dims, kMaxDims));
    }
    t.n_dims = static_cast<int>(n_dims);
    for (uint32_t d = 0; d < n_dims; ++d) {
      const size_t ne_at = cursor.offset();
      const int64_t ne = cursor.read<int64_t>(field + " (dimension)");
      if (ne < 0) cursor.error_at(ne_at, field, fmt::format("dimension {} is negative ({})", d, ne));
      t.ne[d] = ne;
    }
    // Element count without overflow: each partial product must stay below INT64_MAX.
    int64_t elements = 1;
    for (int d = 0; d < kMaxDims; ++d) {
      if (t.ne[d] != 0 && elements > std::numeric_limits<int64_t>::max() / t.ne[d]) {
        cursor.error_at(dims_at, field, fmt::format("shape {} has more elements than fit in 64 bits",
                                                    t.shape_string()));
      }
      elements *= t.ne[d];
    }
    const size_t type_at = cursor.offset();
    const uint32_t type_id = cursor.read<uint32_t>(field + " (type)");
    const TypeTraits* traits = find_type_traits(type_id);
    if (traits == nullptr) {
      cursor.error_at(type_at, field, fmt::format("unknown tensor type id {}", type_id));
    }
    t.type = traits->type;
    if (t.ne[0] % traits->block_size != 0) {
      cursor.error_at(dims_at, field, fmt::format("first dimension {} is not a multiple of the {} block size {}",
                                                  t.ne[0], traits->name, traits->block_size));
    }
    // Bytes = blocks * bytes_per_block; blocks <= elements, so check that product for overflow too.
    const auto blocks = static_cast<uint64_t>(elements / traits->block_size);
    if (blocks > std::numeric_limits<uint64_t>::max() / static_cast<uint64_t>(traits->bytes_per_block)) {
      cursor.error_at(dims_at, field, "byte size overflows 64 bits");
    }
    t.n_bytes = blocks * static_cast<uint64_t>(traits->bytes_per_block);
    const size_t offset_at = cursor.offset();
    t.offset = cursor.read<uint64_t>(field + " (data offset)");
    if (t.offset % alignment_ != 0) {
      cursor.error_at(offset_at, field, fmt::format("data offset {} is not a multiple of the alignment {}",
                                                    t.offset, alignment_));
    }
    tensor_index_.emplace(t.name, tensors_.size());
    tensors_.push_back(std::move(t));
  }

  data_offset_ = pad_to(cursor.offset(), alignment_);
  // Vocab-only files (no tensors) may end without the final padding: data_start past EOF is fine then.
  if (tensors_.empty()) return;
  if (data_offset_ > bytes_.size()) {
    fail("{}: data section at byte offset {} starts past the end of the {}-byte file", path_, data_offset_,
         bytes_.size());
  }
  const uint64_t data_size = bytes_.size() - data_offset_;
  // Check bounds first, then overlaps over tensors sorted by offset (writers place them in order, but the format
  // does not require it).
  std::vector<size_t> order(tensors_.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  for (GgufTensorInfo& t : tensors_) {
    if (t.offset > data_size || t.n_bytes > data_size - t.offset) {
      fail("{}: tensor '{}' data [{}, +{}) lies outside the file (data section starts at byte offset {}, holds "
           "{} bytes)", path_, t.name, t.offset, t.n_bytes, data_offset_, data_size);
    }
    t.data = bytes_.data() + data_offset_ + t.offset;
    // Holds for a mapped file (page-aligned) and any image at an aligned address; a misaligned image would hand the
    // kernels misaligned rows.
    if (reinterpret_cast<uintptr_t>(t.data) % kMinAlignment != 0) {
      fail("{}: tensor '{}' data lies at a memory address that is not a multiple of {} (the file image must start "
           "at an aligned address)", path_, t.name, kMinAlignment);
    }
  }
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return tensors_[a].offset < tensors_[b].offset; });
  // Compare each non-empty tensor with the non-empty one reaching furthest before it: an empty tensor in between
  // must not hide an overlap.
  const GgufTensorInfo* furthest = nullptr;
  for (size_t i : order) {
    const GgufTensorInfo& cur = tensors_[i];
    if (cur.n_bytes == 0) continue;
    if (furthest != nullptr && furthest->offset + furthest->n_bytes > cur.offset) {
      fail("{}: tensors '{}' and '{}' overlap in the data section (at byte offsets {} and {}, the first is {} "
           "bytes)", path_, furthest->name, cur.name, data_offset_ + furthest->offset, data_offset_ + cur.offset,
           furthest->n_bytes);
    }
    if (furthest == nullptr || cur.offset + cur.n_bytes > furthest->offset + furthest->n_bytes) furthest = &cur;
  }
}

const GgufValue* GgufFile::find(std::string_view key) const {
  auto it = metadata_index_.find(key);
  return it == metadata_index_.end() ? nullptr : &metadata_[it->second].second;
}

const GgufTensorInfo* GgufFile::find_tensor(std::string_view name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

std::optional<uint64_t> GgufFile::find_uint(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return std::nullopt;
  if (!v->is_integer()) fail("{}: metadata key '{}' has type {}, expected an unsigned integer", path_, key,
                             value_type_name(v->type));
  if (!v->is_unsigned() && v->integer < 0) {
    fail("{}: metadata key '{}' is {}, expected a non-negative integer", path_, key, v->integer);
  }
  return static_cast<uint64_t>(v->integer);
}

std::optional<int64_t> GgufFile::find_int(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return std::nullopt;
  if (!v->is_integer()) fail("{}: metadata key '{}' has type {}, expected an integer", path_, key,
                             value_type_name(v->type));
  if (v->type == GgufValueType::UINT64 && v->integer < 0) {
    fail("{}: metadata key '{}' is {} which does not fit a signed 64-bit integer", path_, key,
         static_cast<uint64_t>(v->integer));
  }
  return v->integer;
}

std::optional<double> GgufFile::find_float(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return std::nullopt;
  if (!v->is_float()) fail("{}: metadata key '{}' has type {}, expected f32", path_, key, value_type_name(v->type));
  return v->real;
}

std::optional<bool> GgufFile::find_bool(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return std::nullopt;
  if (v->type != GgufValueType::BOOL) fail("{}: metadata key '{}' has type {}, expected bool", path_, key,
                                           value_type_name(v->type));
  return v->boolean;
}

std::optional<std::string> GgufFile::find_string(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return std::nullopt;
  if (v->type != GgufValueType::STRING) fail("{}: metadata key '{}' has type {}, expected string", path_, key,
                                             value_type_name(v->type));
  return v->string;
}

uint64_t GgufFile::get_uint(std::string_view key) const {
  auto v = find_uint(key);
  if (!v) fail("{}: required metadata key '{}' is missing", path_, key);
  return *v;
}

std::string GgufFile::get_string(std::string_view key) const {
  auto v = find_string(key);
  if (!v) fail("{}: required metadata key '{}' is missing", path_, key);
  return *v;
}

const GgufArray* GgufFile::find_array(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return nullptr;
  if (v->type != GgufValueType::ARRAY) fail("{}: metadata key '{}' has type {}, expected an array", path_, key,
                                            value_type_name(v->type));
  return v->array.get();
}

std::optional<std::vector<std::string>> GgufFile::find_string_array(std::string_view key) const {
  const GgufArray* a = find_array(key);
  if (a == nullptr) return std::nullopt;
  if (a->elem_type != GgufValueType::STRING) {
    fail("{}: metadata key '{}' is an array of {}, expected an array of strings", path_, key,
         value_type_name(a->elem_type));
  }
  std::vector<std::string> out;
  out.reserve(a->items.size());
  for (const GgufValue& item : a->items) out.push_back(item.string);
  return out;
}

std::optional<std::vector<float>> GgufFile::find_float_array(std::string_view key) const {
  const GgufArray* a = find_array(key);
  if (a == nullptr) return std::nullopt;
  if (a->elem_type != GgufValueType::FLOAT32 && a->elem_type != GgufValueType::FLOAT64) {
    fail("{}: metadata key '{}' is an array of {}, expected an array of f32", path_, key,
         value_type_name(a->elem_type));
  }
  std::vector<float> out;
  out.reserve(a->items.size());
  for (const GgufValue& item : a->items) out.push_back(static_cast<float>(item.real));
  return out;
}

std::optional<std::vector<int64_t>> GgufFile::find_int_array(std::string_view key) const {
  const GgufArray* a = find_array(key);
  if (a == nullptr) return std::nullopt;
  GgufValue probe;
  probe.type = a->elem_type;
  if (!probe.is_integer()) {
    fail("{}: metadata key '{}' is an array of {}, expected an array of integers", path_, key,
         value_type_name(a->elem_type));
  }
  std::vector<int64_t> out;
  out.reserve(a->items.size());
  for (const GgufValue& item : a->items) out.push_back(item.integer);
  return out;
}

std::string format_value(const GgufValue& value, size_t max_items) {
  switch (value.type) {
    case GgufValueType::STRING: {
      std::string s = value.string.size() > 80 ? value.string.substr(0, 77) + "..." : value.string;
      for (char& c : s) if (c == '\n' || c == '\r' || c == '\t') c = ' ';
      return fmt::format("\"{}\"", s);
    }
    case GgufValueType::BOOL: return value.boolean ? "true" : "false";
    case GgufValueType::FLOAT32: case GgufValueType::FLOAT64: return fmt::format("{}", value.real);
    case GgufValueType::UINT64: return fmt::format("{}", static_cast<uint64_t>(value.integer));
    case GgufValueType::ARRAY: {
      const GgufArray& a = *value.array;
      std::string s = fmt::format("{}[{}] [", value_type_name(a.elem_type), a.items.size());
      for (size_t i = 0; i < a.items.size() && i < max_items; ++i) {
        s += (i ? ", " : "") + format_value(a.items[i], max_items);
      }
      if (a.items.size() > max_items) s += ", ...";
      return s + "]";
    }
    default: return fmt::format("{}", value.integer);
  }
}

}  // namespace pagedllm
