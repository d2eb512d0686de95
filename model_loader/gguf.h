#pragma once
// GGUF v2/v3 reader over a read-only mmap, the GGUF format as ggml specifies it. Everything is validated before it is trusted: a bad
// file ends in one pagedllm::Error naming the file, the field and the byte offset, never a read past the end.
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tensor/tensor_types.h"

namespace pagedllm {

enum class GgufValueType : uint32_t {
  UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6, BOOL = 7,
  STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
};
std::string_view value_type_name(GgufValueType type);

struct GgufArray;

// One metadata value. Integers of every width live in `integer` (signed types sign-extended, UINT64 stored
// bit-for-bit), floats in `real`; the stored type is kept so that writers can round-trip it.
struct GgufValue {
  GgufValueType type = GgufValueType::UINT8;
  int64_t integer = 0;
  double real = 0.0;
  bool boolean = false;
  std::string string;
  std::shared_ptr<GgufArray> array;  // only for ARRAY

  bool is_integer() const;
  bool is_unsigned() const;
  bool is_float() const { return type == GgufValueType::FLOAT32 || type == GgufValueType::FLOAT64; }
};

struct GgufArray {
  GgufValueType elem_type = GgufValueType::UINT8;
  std::vector<GgufValue> items;  // numeric and bool elements as scalar values, strings as strings, nested arrays
};

struct GgufTensorInfo {
  std::string name;
  int n_dims = 0;
  int64_t ne[4] = {1, 1, 1, 1};  // ggml order: ne[0] is the contiguous dimension
  GgmlType type = GgmlType::F32;
  uint64_t offset = 0;           // relative to the data section
  uint64_t n_bytes = 0;
  const uint8_t* data = nullptr; // into the mmap; valid while the GgufFile lives

  int64_t n_elements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
  int64_t rows() const { return ne[1] * ne[2] * ne[3]; }
  std::string shape_string() const;  // "[64, 512]"
};

class GgufFile {
 public:
  // Maps and validates `path`; throws pagedllm::Error on any problem.
  static std::unique_ptr<GgufFile> open(const std::string& path);
  // Validates an in-memory image (fuzzing, tests). `bytes` must outlive the object.
  static std::unique_ptr<GgufFile> from_memory(std::span<const uint8_t> bytes, std::string name);
  ~GgufFile();
  GgufFile(const GgufFile&) = delete;
  GgufFile& operator=(const GgufFile&) = delete;

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  uint64_t file_size() const { return bytes_.size(); }
  uint32_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }

  // Metadata in file order.
  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return metadata_; }
  const GgufValue* find(std::string_view key) const;
  bool has(std::string_view key) const { return find(key) != nullptr; }

  // Typed getters. Integers are accepted from any integer type whose value fits (explicitly lenient: some writers
  // store u32 keys as i32); anything else is an Error naming the key and both types. `get_*` throws when the key
  // is missing, `find_*` returns nullopt.
  std::optional<uint64_t> find_uint(std::string_view key) const;
  std::optional<int64_t> find_int(std::string_view key) const;
  std::optional<double> find_float(std::string_view key) const;
  std::optional<bool> find_bool(std::string_view key) const;
  std::optional<std::string> find_string(std::string_view key) const;
  uint64_t get_uint(std::string_view key) const;
  std::string get_string(std::string_view key) const;
  // Arrays: element type checked; nullptr / nullopt when the key is missing.
  const GgufArray* find_array(std::string_view key) const;
  std::optional<std::vector<std::string>> find_string_array(std::string_view key) const;
  std::optional<std::vector<float>> find_float_array(std::string_view key) const;
  std::optional<std::vector<int64_t>> find_int_array(std::string_view key) const;

  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* find_tensor(std::string_view name) const;

 private:
  GgufFile() = default;
  void parse();

  std::string path_;
  std::span<const uint8_t> bytes_;
  void* mapping_ = nullptr;  // munmap on destruction when non-null
  size_t mapping_size_ = 0;
  uint32_t version_ = 0;
  uint32_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::vector<std::pair<std::string, GgufValue>> metadata_;
  std::map<std::string, size_t, std::less<>> metadata_index_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, size_t, std::less<>> tensor_index_;
};

// Human-readable rendering of a value (arrays shortened), for `info`.
std::string format_value(const GgufValue& value, size_t max_items = 8);

}  // namespace pagedllm
