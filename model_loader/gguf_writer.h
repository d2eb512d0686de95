#pragma once
// GGUF v2/v3 writer: metadata of every value type, tensors placed in insertion order at
// multiples of the alignment. Tests build well-formed files with it and then break them on purpose through the
// byte layout it reports; benchmarks build synthetic models of any shape with it.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "model_loader/gguf.h"
#include "tensor/tensor_types.h"

namespace pagedllm {

// Builders for metadata values, so that a call site states the stored type explicitly.
namespace gguf_value {
GgufValue u8(uint8_t x);
GgufValue i8(int8_t x);
GgufValue u16(uint16_t x);
GgufValue i16(int16_t x);
GgufValue u32(uint32_t x);
GgufValue i32(int32_t x);
GgufValue u64(uint64_t x);
GgufValue i64(int64_t x);
GgufValue f32(float x);
GgufValue f64(double x);
GgufValue boolean(bool x);
GgufValue string(std::string x);
// Every item must have type `elem_type` (items of a nested array are themselves ARRAY values).
GgufValue array(GgufValueType elem_type, std::vector<GgufValue> items);
GgufValue string_array(const std::vector<std::string>& items);
GgufValue f32_array(std::span<const float> items);
GgufValue i32_array(std::span<const int32_t> items);
}  // namespace gguf_value

// Where each part of a written file lies (absolute byte offsets), so that tests can patch exactly one field.
struct GgufLayout {
  struct MetadataRecord {
    std::string key;
    uint64_t begin = 0;         // the key's u64 length
    uint64_t type_offset = 0;   // the value type id (u32)
    uint64_t value_offset = 0;  // the value; for an array: its element type, then count at +4, elements at +12
    uint64_t end = 0;           // one past the record
  };
  struct TensorRecord {
    std::string name;
    uint64_t begin = 0;          // the name's u64 length
    uint64_t n_dims_offset = 0;  // u32
    uint64_t dims_offset = 0;    // n_dims x u64 (i64 in readers)
    uint64_t type_offset = 0;    // ggml type id (u32)
    uint64_t offset_offset = 0;  // u64 data offset relative to data_begin
    uint64_t end = 0;            // one past the record
    uint64_t data_begin = 0;     // absolute position of the tensor's bytes
    uint64_t n_bytes = 0;
  };
  uint64_t metadata_begin = 24;  // right after the fixed header
  uint64_t tensor_infos_begin = 0;
  uint64_t tensor_infos_end = 0;
  uint64_t data_begin = 0;  // tensor_infos_end padded to the alignment
  uint64_t file_size = 0;
  uint32_t alignment = 32;
  std::vector<MetadataRecord> metadata;
  std::vector<TensorRecord> tensors;
};

class GgufWriter {
 public:
  // Fills a tensor's bytes at write time, so that large synthetic tensors are generated straight into the output
  // (the span has exactly the tensor's byte size).
  using TensorFiller = std::function<void(std::span<uint8_t> out)>;

  explicit GgufWriter(uint32_t version = 3);

  void set_version(uint32_t version) { version_ = version; }  // any value: tests write unsupported ones too
  uint32_t version() const { return version_; }

  // Sets (or replaces, keeping its position) a metadata entry.
  void set(std::string_view key, GgufValue value);
  // Appends an entry even when the key exists: only for tests that need a duplicate key.
  void append_duplicate(std::string_view key, GgufValue value);
  // Removes every entry with this key; false when there was none.
  bool remove(std::string_view key);
  void set_u32(std::string_view key, uint32_t x) { set(key, gguf_value::u32(x)); }
  void set_f32(std::string_view key, float x) { set(key, gguf_value::f32(x)); }
  void set_bool(std::string_view key, bool x) { set(key, gguf_value::boolean(x)); }
  void set_string(std::string_view key, std::string x) { set(key, gguf_value::string(std::move(x))); }
  // Stores general.alignment (u32): a power of two of at least 8, as the reader requires. (A test that needs a file
  // with another alignment sets the key itself; the layout then follows any power of two it holds.)
  void set_alignment(uint32_t alignment);
  // The alignment the file will use: general.alignment when it is a valid u32, else the default 32.
  uint32_t alignment() const;

  // Adds a tensor with `ne` in ggml order (ne[0] contiguous, 1..4 dims). The data must be exactly the byte size
  // the shape and type imply (ne[0] a multiple of the type's block size).
  void add_tensor(std::string_view name, std::vector<int64_t> ne, GgmlType type, std::vector<uint8_t> data);
  void add_tensor(std::string_view name, std::vector<int64_t> ne, GgmlType type, std::span<const uint8_t> data);
  void add_tensor_f32(std::string_view name, std::vector<int64_t> ne, std::span<const float> values);
  void add_tensor_generated(std::string_view name, std::vector<int64_t> ne, GgmlType type, TensorFiller fill);

  size_t tensor_count() const { return tensors_.size(); }
  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return metadata_; }

  GgufLayout layout() const;
  // The whole file in memory (the only allocation is the image itself: generated tensors fill it in place).
  std::vector<uint8_t> to_bytes() const;
  // Streams the file to `path` through a temporary file in the same folder that is renamed over `path` only
  // when complete, so a half-written model never appears under the real name. Peak memory is the largest
  // generated tensor.
  // `progress(bytes_written, total_bytes)`, when given, is called after each tensor.
  void write_file(const std::string& path,
                  const std::function<void(uint64_t, uint64_t)>& progress = {}) const;

  // Bytes a tensor of this shape and type occupies (ne[0] must be a multiple of the block size).
  static uint64_t tensor_bytes(std::span<const int64_t> ne, GgmlType type);

 private:
  struct PendingTensor {
    std::string name;
    std::vector<int64_t> ne;
    GgmlType type;
    uint64_t n_bytes;
    std::vector<uint8_t> data;  // used when `fill` is empty
    TensorFiller fill;
  };
  PendingTensor& new_tensor(std::string_view name, std::vector<int64_t> ne, GgmlType type);
  // Header, metadata, tensor infos and the padding up to the data section; records offsets in `layout`.
  std::vector<uint8_t> serialize_head(GgufLayout& layout) const;

  uint32_t version_;
  std::vector<std::pair<std::string, GgufValue>> metadata_;
  std::vector<PendingTensor> tensors_;
};

}  // namespace pagedllm
