#include "model_loader/gguf_writer.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>

#include <fmt/format.h>

#include "common/error.h"

namespace pagedllm {
namespace {

constexpr uint32_t kGgufMagic = 0x46554747;  // "GGUF" as a little-endian u32
constexpr uint32_t kDefaultAlignment = 32;
constexpr int kMaxDims = 4;

uint64_t pad_to(uint64_t x, uint64_t alignment) { return (x + alignment - 1) / alignment * alignment; }

bool is_power_of_two(uint64_t x) { return x != 0 && (x & (x - 1)) == 0; }

GgufValue scalar(GgufValueType type) {
  GgufValue v;
  v.type = type;
  return v;
}

// Appends little-endian encodings to a byte vector (this engine only runs on little-endian hosts, as GGUF files
// are little-endian unless byte-swapped by hand).
class ByteBuilder {
 public:
  explicit ByteBuilder(std::vector<uint8_t>& out) : out_(out) {}
  uint64_t position() const { return out_.size(); }

  template <typename T>
  void put(T value) {
    put_bytes(&value, sizeof(T));
  }
  void put_string(std::string_view s) {
    put<uint64_t>(s.size());
    put_bytes(s.data(), s.size());
  }
  void put_zeros(uint64_t n) { out_.resize(out_.size() + n, 0); }


  void put_value(const GgufValue& v, std::string_view key) {
    switch (v.type) {
      case GgufValueType::UINT8: put<uint8_t>(static_cast<uint8_t>(v.integer)); break;
      case GgufValueType::INT8: put<int8_t>(static_cast<int8_t>(v.integer)); break;
      case GgufValueType::UINT16: put<uint16_t>(static_cast<uint16_t>(v.integer)); break;
      case GgufValueType::INT16: put<int16_t>(static_cast<int16_t>(v.integer)); break;
      case GgufValueType::UINT32: put<uint32_t>(static_cast<uint32_t>(v.integer)); break;
      case GgufValueType::INT32: put<int32_t>(static_cast<int32_t>(v.integer)); break;
      case GgufValueType::UINT64: put<uint64_t>(static_cast<uint64_t>(v.integer)); break;
      case GgufValueType::INT64: put<int64_t>(v.integer); break;
      case GgufValueType::FLOAT32: put<float>(static_cast<float>(v.real)); break;
      case GgufValueType::FLOAT64: put<double>(v.real); break;
      case GgufValueType::BOOL: put<uint8_t>(v.boolean ? 1 : 0); break;
      case GgufValueType::STRING: put_string(v.string); break;
      case GgufValueType::ARRAY: {
        if (!v.array) fail("GGUF writer: metadata key '{}' is an array value without items", key);
        put<uint32_t>(static_cast<uint32_t>(v.array->elem_type));
        put<uint64_t>(v.array->items.size());
        for (const GgufValue& item : v.array->items) {
          if (item.type != v.array->elem_type) {
            fail("GGUF writer: metadata key '{}' is an array of {} holding an item of type {}", key,
                 value_type_name(v.array->elem_type), value_type_name(item.type));
          }
          // Nested arrays carry their own element type and count, recursively
          put_value(item, key);
        }
        break;
      }
      default: fail("GGUF writer: metadata key '{}' has unknown value type {}", key, static_cast<uint32_t>(v.type));
    }
  }

 private:
  // resize + memcpy rather than insert: GCC 12 at -O3 warns falsely (-Wstringop-overflow) on small inserts.
  void put_bytes(const void* data, size_t n) {
    if (n == 0) return;
    const size_t at = out_.size();
    out_.resize(at + n);
    std::memcpy(out_.data() + at, data, n);
  }

  std::vector<uint8_t>& out_;
};

// Closes the FILE and removes the temporary file unless `keep()` was called: an interrupted write never leaves
// debris that looks like a model.
class TempFile {
 public:
  explicit TempFile(std::string path) : path_(std::move(path)) {
    file_ = std::fopen(path_.c_str(), "wb");
    if (file_ == nullptr) fail("{}: cannot create file: {}", path_, std::strerror(errno));
  }
  ~TempFile() {
    if (file_ != nullptr) std::fclose(file_);
    if (!kept_) std::remove(path_.c_str());
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;

  void write(const void* data, size_t n) {
    if (n != 0 && std::fwrite(data, 1, n, file_) != n) fail("{}: write failed: {}", path_, std::strerror(errno));
  }
  void write_zeros(size_t n) {
    static const uint8_t zeros[4096] = {};
    while (n > 0) {
      const size_t chunk = n < sizeof zeros ? n : sizeof zeros;
      write(zeros, chunk);
      n -= chunk;
    }
  }
  // Flushes to disk and renames over `final_path`.
  void commit(const std::string& final_path) {
    if (std::fflush(file_) != 0 || ::fsync(fileno(file_)) != 0) {
      fail("{}: flush failed: {}", path_, std::strerror(errno));
    }
    const int close_result = std::fclose(file_);
    file_ = nullptr;
    if (close_result != 0) fail("{}: close failed: {}", path_, std::strerror(errno));
    if (std::rename(path_.c_str(), final_path.c_str()) != 0) {
      fail("{}: cannot rename to {}: {}", path_, final_path, std::strerror(errno));
    }
    kept_ = true;
  }

 private:
  std::string path_;
  std::FILE* file_ = nullptr;
  bool kept_ = false;
};

}  // namespace

namespace gguf_value {
GgufValue u8(uint8_t x) { GgufValue v = scalar(GgufValueType::UINT8); v.integer = x; return v; }
GgufValue i8(int8_t x) { GgufValue v = scalar(GgufValueType::INT8); v.integer = x; return v; }
GgufValue u16(uint16_t x) { GgufValue v = scalar(GgufValueType::UINT16); v.integer = x; return v; }
GgufValue i16(int16_t x) { GgufValue v = scalar(GgufValueType::INT16); v.integer = x; return v; }
GgufValue u32(uint32_t x) { GgufValue v = scalar(GgufValueType::UINT32); v.integer = x; return v; }
GgufValue i32(int32_t x) { GgufValue v = scalar(GgufValueType::INT32); v.integer = x; return v; }
GgufValue u64(uint64_t x) {
  GgufValue v = scalar(GgufValueType::UINT64);
  v.integer = static_cast<int64_t>(x);  // bit-for-bit, as the reader stores it
  return v;
}
GgufValue i64(int64_t x) { GgufValue v = scalar(GgufValueType::INT64); v.integer = x; return v; }
GgufValue f32(float x) { GgufValue v = scalar(GgufValueType::FLOAT32); v.real = x; return v; }
GgufValue f64(double x) { GgufValue v = scalar(GgufValueType::FLOAT64); v.real = x; return v; }
GgufValue boolean(bool x) { GgufValue v = scalar(GgufValueType::BOOL); v.boolean = x; return v; }
GgufValue string(std::string x) { GgufValue v = scalar(GgufValueType::STRING); v.string = std::move(x); return v; }

GgufValue array(GgufValueType elem_type, std::vector<GgufValue> items) {
  for (const GgufValue& item : items) {
    if (item.type != elem_type) {
      fail("GGUF writer: array of {} given an item of type {}", value_type_name(elem_type),
           value_type_name(item.type));
    }
  }
  GgufValue v = scalar(GgufValueType::ARRAY);
  v.array = std::make_shared<GgufArray>();
  v.array->elem_type = elem_type;
  v.array->items = std::move(items);
  return v;
}

GgufValue string_array(const std::vector<std::string>& items) {
  std::vector<GgufValue> values;
  values.reserve(items.size());
  for (const std::string& s : items) values.push_back(string(s));
  return array(GgufValueType::STRING, std::move(values));
}

GgufValue f32_array(std::span<const float> items) {
  std::vector<GgufValue> values;
  values.reserve(items.size());
  for (float x : items) values.push_back(f32(x));
  return array(GgufValueType::FLOAT32, std::move(values));
}

GgufValue i32_array(std::span<const int32_t> items) {
  std::vector<GgufValue> values;
  values.reserve(items.size());
  for (int32_t x : items) values.push_back(i32(x));
  return array(GgufValueType::INT32, std::move(values));
}
}  // namespace gguf_value

GgufWriter::GgufWriter(uint32_t version) : version_(version) {}

void GgufWriter::set(std::string_view key, GgufValue value) {
  for (auto& [existing_key, existing_value] : metadata_) {
    if (existing_key == key) {
      existing_value = std::move(value);
      return;
    }
  }
  metadata_.emplace_back(std::string(key), std::move(value));
}

void GgufWriter::append_duplicate(std::string_view key, GgufValue value) {
  metadata_.emplace_back(std::string(key), std::move(value));
}

bool GgufWriter::remove(std::string_view key) {
  const size_t before = metadata_.size();
  std::erase_if(metadata_, [&](const auto& entry) { return entry.first == key; });
  return metadata_.size() != before;
}

void GgufWriter::set_alignment(uint32_t alignment) {
  // What the reader accepts: a power of two (llama.cpp) that is a multiple of 8 (the GGUF specification).
  if (!is_power_of_two(alignment) || alignment < 8) {
    fail("GGUF writer: alignment {} is not a power of two of at least 8", alignment);
  }
  set_u32("general.alignment", alignment);
}

uint32_t GgufWriter::alignment() const {
  for (const auto& [key, value] : metadata_) {
    if (key == "general.alignment" && value.type == GgufValueType::UINT32 &&
        is_power_of_two(static_cast<uint64_t>(value.integer))) {
      return static_cast<uint32_t>(value.integer);
    }
  }
  return kDefaultAlignment;
}

uint64_t GgufWriter::tensor_bytes(std::span<const int64_t> ne, GgmlType type) {
  const TypeTraits& traits = type_traits(type);
  if (ne.empty() || ne.size() > kMaxDims) fail("GGUF writer: a tensor needs 1..{} dimensions, got {}", kMaxDims,
                                               ne.size());
  uint64_t elements = 1;
  for (int64_t n : ne) {
    if (n < 0) fail("GGUF writer: negative dimension {}", n);
    if (n != 0 && elements > std::numeric_limits<uint64_t>::max() / static_cast<uint64_t>(n)) {
      fail("GGUF writer: tensor element count overflows 64 bits");
    }
    elements *= static_cast<uint64_t>(n);
  }
  if (ne[0] % traits.block_size != 0) {
    fail("GGUF writer: first dimension {} is not a multiple of the {} block size {}", ne[0], traits.name,
         traits.block_size);
  }
  return elements / static_cast<uint64_t>(traits.block_size) * static_cast<uint64_t>(traits.bytes_per_block);
}

GgufWriter::PendingTensor& GgufWriter::new_tensor(std::string_view name, std::vector<int64_t> ne, GgmlType type) {
  for (const PendingTensor& t : tensors_) {
    if (t.name == name) fail("GGUF writer: duplicate tensor name '{}'", name);
  }
  const uint64_t n_bytes = tensor_bytes(ne, type);
  tensors_.push_back(PendingTensor{std::string(name), std::move(ne), type, n_bytes, {}, {}});
  return tensors_.back();
}

void GgufWriter::add_tensor(std::string_view name, std::vector<int64_t> ne, GgmlType type,
                            std::vector<uint8_t> data) {
  PendingTensor& t = new_tensor(name, std::move(ne), type);
  if (data.size() != t.n_bytes) {
    const std::string message = fmt::format("GGUF writer: tensor '{}' needs {} bytes of {} data, given {}", name,
                                            t.n_bytes, type_name(type), data.size());
    tensors_.pop_back();
    throw Error(message);
  }
  t.data = std::move(data);
}

void GgufWriter::add_tensor(std::string_view name, std::vector<int64_t> ne, GgmlType type,
                            std::span<const uint8_t> data) {
  add_tensor(name, std::move(ne), type, std::vector<uint8_t>(data.begin(), data.end()));
}

void GgufWriter::add_tensor_f32(std::string_view name, std::vector<int64_t> ne, std::span<const float> values) {
  const auto* bytes = reinterpret_cast<const uint8_t*>(values.data());
  add_tensor(name, std::move(ne), GgmlType::F32, std::vector<uint8_t>(bytes, bytes + values.size_bytes()));
}

void GgufWriter::add_tensor_generated(std::string_view name, std::vector<int64_t> ne, GgmlType type,
                                      TensorFiller fill) {
  if (!fill) fail("GGUF writer: tensor '{}' has no filler", name);
  new_tensor(name, std::move(ne), type).fill = std::move(fill);
}

std::vector<uint8_t> GgufWriter::serialize_head(GgufLayout& layout) const {
  layout = GgufLayout{};
  layout.alignment = alignment();
  std::vector<uint8_t> head;
  ByteBuilder out(head);
  out.put<uint32_t>(kGgufMagic);
  out.put<uint32_t>(version_);
  out.put<int64_t>(static_cast<int64_t>(tensors_.size()));
  out.put<int64_t>(static_cast<int64_t>(metadata_.size()));
  layout.metadata_begin = out.position();

  for (const auto& [key, value] : metadata_) {
    GgufLayout::MetadataRecord record;
    record.key = key;
    record.begin = out.position();
    out.put_string(key);
    record.type_offset = out.position();
    out.put<uint32_t>(static_cast<uint32_t>(value.type));
    record.value_offset = out.position();
    out.put_value(value, key);
    record.end = out.position();
    layout.metadata.push_back(std::move(record));
  }

  layout.tensor_infos_begin = out.position();
  uint64_t relative_offset = 0;  // tensors back to back in info order, each padded to the alignment
  for (const PendingTensor& t : tensors_) {
    GgufLayout::TensorRecord record;
    record.name = t.name;
    record.begin = out.position();
    out.put_string(t.name);
    record.n_dims_offset = out.position();
    out.put<uint32_t>(static_cast<uint32_t>(t.ne.size()));
    record.dims_offset = out.position();
    for (int64_t n : t.ne) out.put<uint64_t>(static_cast<uint64_t>(n));
    record.type_offset = out.position();
    out.put<uint32_t>(static_cast<uint32_t>(t.type));
    record.offset_offset = out.position();
    out.put<uint64_t>(relative_offset);
    record.end = out.position();
    record.data_begin = relative_offset;  // made absolute below, once data_begin is known
    record.n_bytes = t.n_bytes;
    layout.tensors.push_back(std::move(record));
    relative_offset += pad_to(t.n_bytes, layout.alignment);
  }
  layout.tensor_infos_end = out.position();
  layout.data_begin = pad_to(layout.tensor_infos_end, layout.alignment);
  out.put_zeros(layout.data_begin - layout.tensor_infos_end);
  for (GgufLayout::TensorRecord& record : layout.tensors) record.data_begin += layout.data_begin;
  layout.file_size = layout.data_begin + relative_offset;
  return head;
}

GgufLayout GgufWriter::layout() const {
  GgufLayout layout;
  serialize_head(layout);
  return layout;
}

std::vector<uint8_t> GgufWriter::to_bytes() const {
  GgufLayout layout;
  std::vector<uint8_t> image = serialize_head(layout);
  // The padding after each tensor stays zero from this resize.
  image.resize(layout.file_size);
  for (size_t i = 0; i < tensors_.size(); ++i) {
    const PendingTensor& t = tensors_[i];
    uint8_t* destination = image.data() + layout.tensors[i].data_begin;
    if (t.fill) {
      t.fill(std::span<uint8_t>(destination, t.n_bytes));
    } else if (t.n_bytes != 0) {
      std::memcpy(destination, t.data.data(), t.n_bytes);
    }
  }
  return image;
}

void GgufWriter::write_file(const std::string& path, const std::function<void(uint64_t, uint64_t)>& progress) const {
  GgufLayout layout;
  const std::vector<uint8_t> head = serialize_head(layout);
  uint64_t total = head.size(), written = head.size();
  for (const PendingTensor& t : tensors_) total += pad_to(t.n_bytes, layout.alignment);
  TempFile file(fmt::format("{}.partial-{}", path, ::getpid()));
  file.write(head.data(), head.size());
  std::vector<uint8_t> generated;  // [n_bytes of the current generated tensor]
  for (size_t i = 0; i < tensors_.size(); ++i) {
    const PendingTensor& t = tensors_[i];
    if (t.fill) {
      generated.assign(t.n_bytes, 0);
      t.fill(std::span<uint8_t>(generated));
      file.write(generated.data(), generated.size());
    } else {
      file.write(t.data.data(), t.n_bytes);
    }
    file.write_zeros(pad_to(t.n_bytes, layout.alignment) - t.n_bytes);
    written += pad_to(t.n_bytes, layout.alignment);
    if (progress) progress(written, total);
  }
  file.commit(path);
}

}  // namespace pagedllm
