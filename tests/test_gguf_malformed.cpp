// Malformed GGUF files, built from one valid writer image by cutting or patching single fields through the layout
// the writer reports. Every one must end in a pagedllm::Error naming the file, the field and the byte offset
// (issue 2: never a crash, a hang, a huge allocation or a read past the end). Run it under
// -DPAGEDLLM_SANITIZE=address,undefined to prove the "never a read past the end" half.
#include <doctest/doctest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include <unistd.h>

#include "common/error.h"
#include "model_loader/gguf.h"
#include "model_loader/gguf_writer.h"

using namespace pagedllm;
namespace fs = std::filesystem;

namespace {

// Three tensors: F32 [8, 4] (128 bytes), Q4_0 [64, 2] (72 bytes, padded to 96), F32 [16] (64 bytes, so the file
// ends exactly at the end of the last tensor and every cut removes real data).
// A long first value so that cuts inside the later records come after the count checks, which reject files too
// small for their declared number of records (3 tensors x 32 bytes, 6 entries x 13 bytes) before reading them.
GgufWriter base_writer() {
  GgufWriter w;
  w.set_string("general.description", std::string(150, 'd'));
  w.set_string("general.architecture", "llama");
  w.set_string("general.name", "malformed-base");
  w.set("tokenizer.ggml.tokens", gguf_value::string_array({"<unk>", "<s>", "hello"}));
  w.set("some.u32_array", gguf_value::array(GgufValueType::UINT32,
                                            {gguf_value::u32(1), gguf_value::u32(2), gguf_value::u32(3)}));
  w.set_f32("some.float", 0.5f);
  w.add_tensor("t.a", {8, 4}, GgmlType::F32, std::vector<uint8_t>(128, 0x11));
  w.add_tensor("t.b", {64, 2}, GgmlType::Q4_0, std::vector<uint8_t>(72, 0x22));
  w.add_tensor("t.c", {16}, GgmlType::F32, std::vector<uint8_t>(64, 0x33));
  return w;
}

struct Base {
  std::vector<uint8_t> image;
  GgufLayout layout;
  Base() {
    const GgufWriter w = base_writer();
    image = w.to_bytes();
    layout = w.layout();
  }
  const GgufLayout::MetadataRecord& key(std::string_view name) const {
    for (const auto& r : layout.metadata) {
      if (r.key == name) return r;
    }
    FAIL("no metadata record " << std::string(name));
    throw;
  }
  const GgufLayout::TensorRecord& tensor(std::string_view name) const {
    for (const auto& r : layout.tensors) {
      if (r.name == name) return r;
    }
    FAIL("no tensor record " << std::string(name));
    throw;
  }
};

template <typename T>
void patch(std::vector<uint8_t>& image, uint64_t at, T value) {
  REQUIRE(at + sizeof(T) <= image.size());
  std::memcpy(image.data() + at, &value, sizeof(T));
}

// Parses `image` as `name`, expecting an Error whose message holds the name and every one of `expected`.
void expect_rejected(const std::vector<uint8_t>& image, const std::string& name,
                     const std::vector<std::string>& expected) {
  CAPTURE(name);
  try {
    GgufFile::from_memory(image, name);
    FAIL_CHECK("accepted a malformed file: " << name);
  } catch (const Error& e) {
    const std::string message = e.what();
    CAPTURE(message);
    CHECK_MESSAGE(message.find(name) != std::string::npos, "message does not name the file");
    for (const std::string& part : expected) {
      CHECK_MESSAGE(message.find(part) != std::string::npos, "message lacks '" << part << "'");
    }
  }
}

// Reads every byte of every tensor (so AddressSanitizer sees any pointer past the image) and returns a checksum.
uint64_t touch_all_tensor_bytes(const GgufFile& file) {
  uint64_t sum = 0;
  for (const GgufTensorInfo& t : file.tensors()) {
    for (uint64_t i = 0; i < t.n_bytes; ++i) sum += t.data[i];
  }
  return sum;
}

}  // namespace

TEST_CASE("the base image of this file is valid (so every failure below comes from the one change made)") {
  Base base;
  const auto file = GgufFile::from_memory(base.image, "base.gguf");
  CHECK(file->tensors().size() == 3);
  CHECK(file->metadata().size() == 6);
  CHECK(base.layout.tensors.back().data_begin + base.layout.tensors.back().n_bytes == base.image.size());
  CHECK(touch_all_tensor_bytes(*file) == 128 * 0x11 + 72 * 0x22 + 64 * 0x33);
}

TEST_CASE("table of malformed files: each ends in an Error naming the file, the field and the byte offset") {
  const Base base;
  struct Case {
    std::string name;
    std::function<std::vector<uint8_t>()> build;
    std::vector<std::string> expected;  // substrings of the message besides the file name
  };
  auto patched = [&](std::function<void(std::vector<uint8_t>&)> change) {
    return [&base, change] {
      std::vector<uint8_t> image = base.image;
      change(image);
      return image;
    };
  };
  auto from_writer = [](std::function<void(GgufWriter&)> change) {
    return [change] {
      GgufWriter w = base_writer();
      change(w);
      return w.to_bytes();
    };
  };
  const auto& tokens = base.key("tokenizer.ggml.tokens");
  const auto& name_key = base.key("general.name");
  const auto& float_key = base.key("some.float");
  const auto& u32_array = base.key("some.u32_array");
  const auto& ta = base.tensor("t.a");
  const auto& tb = base.tensor("t.b");
  const auto& tc = base.tensor("t.c");
  const uint64_t data_size = base.image.size() - base.layout.data_begin;

  const std::vector<Case> cases = {
      // Header.
      {"bad_magic.gguf", patched([](auto& b) { b[0] = 'g'; }), {"magic", "byte offset 0", "not a GGUF file"}},
      {"ggml_magic.gguf", patched([](auto& b) { std::memcpy(b.data(), "ggjt", 4); }), {"magic"}},
      {"version_1.gguf", patched([](auto& b) { patch<uint32_t>(b, 4, 1); }),
       {"version", "byte offset 4", "version 1", "obsolete"}},
      {"version_4.gguf", patched([](auto& b) { patch<uint32_t>(b, 4, 4); }),
       {"version", "byte offset 4", "unsupported GGUF version 4"}},
      {"version_0.gguf", patched([](auto& b) { patch<uint32_t>(b, 4, 0); }),
       {"version", "byte offset 4", "no GGUF version 0 exists"}},
      {"big_endian.gguf", patched([](auto& b) { patch<uint32_t>(b, 4, 0x03000000u); }),
       {"version", "byte offset 4", "version 3 written big-endian"}},
      {"absurd_tensor_count.gguf", patched([](auto& b) { patch<int64_t>(b, 8, int64_t{1} << 60); }),
       {"tensor count", "byte offset 8", "cannot fit"}},
      {"negative_tensor_count.gguf", patched([](auto& b) { patch<int64_t>(b, 8, -1); }),
       {"tensor count", "byte offset 8"}},
      {"absurd_kv_count.gguf", patched([](auto& b) { patch<int64_t>(b, 16, int64_t{1} << 50); }),
       {"metadata count", "byte offset 16", "cannot fit"}},
      {"negative_kv_count.gguf", patched([](auto& b) { patch<int64_t>(b, 16, -5); }),
       {"metadata count", "byte offset 16"}},
      // Metadata.
      {"key_length_past_end.gguf", patched([&](auto& b) { patch<uint64_t>(b, base.layout.metadata[0].begin, 1ull << 40); }),
       {"key of metadata entry 0", "string length", "byte offset 24"}},
      {"key_length_max.gguf", patched([&](auto& b) { patch<uint64_t>(b, base.layout.metadata[2].begin, ~0ull); }),
       {"key of metadata entry 2", "string length"}},
      {"string_value_past_end.gguf", patched([&](auto& b) { patch<uint64_t>(b, name_key.value_offset, 1ull << 33); }),
       {"value of metadata key 'general.name'", "runs past the end",
        "byte offset " + std::to_string(name_key.value_offset)}},
      {"array_count_past_end.gguf", patched([&](auto& b) { patch<uint64_t>(b, tokens.value_offset + 4, 1ull << 50); }),
       {"array value of metadata key 'tokenizer.ggml.tokens'", "cannot fit",
        "byte offset " + std::to_string(tokens.value_offset + 4)}},
      {"array_count_max.gguf", patched([&](auto& b) { patch<uint64_t>(b, u32_array.value_offset + 4, ~0ull); }),
       {"some.u32_array", "cannot fit"}},
      {"array_string_past_end.gguf",
       patched([&](auto& b) { patch<uint64_t>(b, tokens.value_offset + 12, 100000); }),
       {"tokenizer.ggml.tokens", "string length 100000"}},
      {"unknown_value_type.gguf", patched([&](auto& b) { patch<uint32_t>(b, float_key.type_offset, 13); }),
       {"value type of metadata key 'some.float'", "unknown type id 13",
        "byte offset " + std::to_string(float_key.type_offset)}},
      {"unknown_value_type_max.gguf", patched([&](auto& b) { patch<uint32_t>(b, float_key.type_offset, ~0u); }),
       {"some.float", "unknown type id 4294967295"}},
      {"unknown_array_element_type.gguf", patched([&](auto& b) { patch<uint32_t>(b, u32_array.value_offset, 13); }),
       {"some.u32_array", "unknown element type 13", "byte offset " + std::to_string(u32_array.value_offset)}},
      {"duplicate_key.gguf", from_writer([](GgufWriter& w) { w.append_duplicate("general.name", gguf_value::u8(1)); }),
       {"duplicate key 'general.name'", "byte offset"}},
      {"alignment_wrong_type.gguf",
       from_writer([](GgufWriter& w) { w.set("general.alignment", gguf_value::u64(32)); }),
       {"general.alignment", "expected u32", "byte offset"}},
      {"alignment_string.gguf", from_writer([](GgufWriter& w) { w.set_string("general.alignment", "32"); }),
       {"general.alignment", "expected u32"}},
      {"alignment_not_power_of_two.gguf",
       from_writer([](GgufWriter& w) { w.set("general.alignment", gguf_value::u32(48)); }),
       {"general.alignment", "is 48", "power of two", "byte offset"}},
      {"alignment_zero.gguf", from_writer([](GgufWriter& w) { w.set("general.alignment", gguf_value::u32(0)); }),
       {"general.alignment", "is 0", "power of two"}},
      // Powers of two below 8 (llama.cpp accepts them, the GGUF specification does not): the writer packs the
      // tensors that tightly, so an f32 tensor would start at an address no float may be read from.
      {"alignment_1.gguf", from_writer([](GgufWriter& w) { w.set("general.alignment", gguf_value::u32(1)); }),
       {"general.alignment", "is 1", "power of two of at least 8", "multiple of 8", "byte offset"}},
      {"alignment_2.gguf", from_writer([](GgufWriter& w) { w.set("general.alignment", gguf_value::u32(2)); }),
       {"general.alignment", "is 2", "at least 8"}},
      {"alignment_4.gguf", from_writer([](GgufWriter& w) { w.set("general.alignment", gguf_value::u32(4)); }),
       {"general.alignment", "is 4", "at least 8"}},
      // A multiple of 8 that llama.cpp refuses: not a power of two.
      {"alignment_24.gguf", from_writer([](GgufWriter& w) { w.set("general.alignment", gguf_value::u32(24)); }),
       {"general.alignment", "is 24", "power of two"}},
      {"arrays_nested_too_deep.gguf", from_writer([](GgufWriter& w) {
         GgufValue v = gguf_value::array(GgufValueType::UINT8, {gguf_value::u8(1)});
         for (int depth = 0; depth < 12; ++depth) v = gguf_value::array(GgufValueType::ARRAY, {v});
         w.set("deep", v);
       }),
       {"'deep'", "nested too deeply"}},
      // Tensor infos.
      {"tensor_name_past_end.gguf", patched([&](auto& b) { patch<uint64_t>(b, tb.begin, 1ull << 45); }),
       {"name of tensor 1", "string length"}},
      {"tensor_name_too_long.gguf",
       from_writer([](GgufWriter& w) { w.add_tensor(std::string(64, 'x'), {1}, GgmlType::F32, std::vector<uint8_t>(4)); }),
       {"name is 64 bytes long"}},
      {"duplicate_tensor_name.gguf", patched([&](auto& b) { b[tb.begin + 8 + 2] = 'a'; }),
       {"tensor 't.a'", "duplicate tensor name", "byte offset " + std::to_string(tb.begin)}},
      {"n_dims_0.gguf", patched([&](auto& b) { patch<uint32_t>(b, ta.n_dims_offset, 0); }),
       {"tensor 't.a'", "0 dimensions (must be 1..4)", "byte offset " + std::to_string(ta.n_dims_offset)}},
      {"n_dims_5.gguf", patched([&](auto& b) { patch<uint32_t>(b, tb.n_dims_offset, 5); }),
       {"tensor 't.b'", "5 dimensions (must be 1..4)"}},
      {"n_dims_huge.gguf", patched([&](auto& b) { patch<uint32_t>(b, tb.n_dims_offset, 0x80000000u); }),
       {"tensor 't.b'", "dimensions (must be 1..4)"}},
      {"negative_dim.gguf", patched([&](auto& b) { patch<int64_t>(b, ta.dims_offset + 8, -4); }),
       {"tensor 't.a'", "dimension 1 is negative (-4)", "byte offset " + std::to_string(ta.dims_offset + 8)}},
      {"element_count_overflow.gguf", patched([&](auto& b) {
         patch<int64_t>(b, ta.dims_offset, int64_t{1} << 40);
         patch<int64_t>(b, ta.dims_offset + 8, int64_t{1} << 40);
       }),
       {"tensor 't.a'", "more elements than fit in 64 bits"}},
      {"byte_size_overflow.gguf", patched([&](auto& b) {
         // 2^62 F32 elements: the count fits, the 2^64 bytes do not.
         patch<int64_t>(b, ta.dims_offset, int64_t{1} << 31);
         patch<int64_t>(b, ta.dims_offset + 8, int64_t{1} << 31);
       }),
       {"tensor 't.a'", "overflows 64 bits"}},
      {"huge_tensor.gguf", patched([&](auto& b) { patch<int64_t>(b, ta.dims_offset + 8, int64_t{1} << 40); }),
       {"tensor 't.a'", "lies outside the file"}},
      {"unknown_dtype_4.gguf", patched([&](auto& b) { patch<uint32_t>(b, ta.type_offset, 4); }),
       {"tensor 't.a'", "unknown tensor type id 4", "byte offset " + std::to_string(ta.type_offset)}},
      {"unknown_dtype_99.gguf", patched([&](auto& b) { patch<uint32_t>(b, tc.type_offset, 99); }),
       {"tensor 't.c'", "unknown tensor type id 99"}},
      {"ne0_not_block_multiple.gguf", patched([&](auto& b) { patch<int64_t>(b, tb.dims_offset, 48); }),
       {"tensor 't.b'", "48 is not a multiple of the Q4_0 block size 32"}},
      {"f32_as_q4_k.gguf", patched([&](auto& b) { patch<uint32_t>(b, ta.type_offset, 12); }),
       {"tensor 't.a'", "Q4_K block size 256"}},
      {"misaligned_offset.gguf", patched([&](auto& b) { patch<uint64_t>(b, tb.offset_offset, 128 + 4); }),
       {"tensor 't.b'", "data offset 132 is not a multiple of the alignment 32",
        "byte offset " + std::to_string(tb.offset_offset)}},
      {"offset_past_end.gguf", patched([&](auto& b) { patch<uint64_t>(b, tc.offset_offset, data_size + 32 * 1000); }),
       {"tensor 't.c'", "lies outside the file", "byte offset"}},
      {"offset_straddles_end.gguf", patched([&](auto& b) { patch<uint64_t>(b, tc.offset_offset, data_size - 32); }),
       {"tensor 't.c'", "lies outside the file"}},
      {"offset_overflows.gguf", patched([&](auto& b) { patch<uint64_t>(b, tc.offset_offset, ~uint64_t{31}); }),
       {"tensor 't.c'", "lies outside the file"}},
      {"overlapping_tensors.gguf", patched([&](auto& b) { patch<uint64_t>(b, tb.offset_offset, 96); }),
       {"tensors 't.a' and 't.b' overlap", "byte offset"}},
      {"same_offset.gguf", patched([&](auto& b) { patch<uint64_t>(b, tc.offset_offset, 0); }),
       {"overlap", "'t.c'"}},
      {"data_section_past_end.gguf", [&] {
         return std::vector<uint8_t>(base.image.begin(), base.image.begin() + base.layout.tensor_infos_end);
       },
       {"data section at byte offset " + std::to_string(base.layout.data_begin), "starts past the end"}},
  };

  for (const Case& c : cases) {
    expect_rejected(c.build(), c.name, c.expected);
  }
}

TEST_CASE("a bad version says what it is: damaged, obsolete, too new or big-endian, never a guess") {
  const Base base;
  auto message_for = [&](uint32_t version) {
    std::vector<uint8_t> image = base.image;
    patch<uint32_t>(image, 4, version);
    try {
      GgufFile::from_memory(image, "version.gguf");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    FAIL("version " << version << " was accepted");
    return std::string();
  };
  const std::string zero = message_for(0);
  CHECK_MESSAGE(zero.find("no GGUF version 0 exists, so the header is damaged") != std::string::npos, zero);
  CHECK_MESSAGE(zero.find("big-endian") == std::string::npos, zero);  // 0 is no byte-swapped 2 or 3
  const std::string swapped_two = message_for(0x02000000u);
  CHECK_MESSAGE(swapped_two.find("version 2 written big-endian") != std::string::npos, swapped_two);
  const std::string other = message_for(0x00010000u);
  CHECK_MESSAGE(other.find("big-endian") == std::string::npos, other);
  CHECK_MESSAGE(other.find("damaged, or this is not a model file") != std::string::npos, other);
}

TEST_CASE("a file image at a misaligned address is refused rather than handing the kernels misaligned rows") {
  const Base base;
  std::vector<uint8_t> shifted(base.image.size() + 1);
  std::memcpy(shifted.data() + 1, base.image.data(), base.image.size());
  try {
    GgufFile::from_memory(std::span<const uint8_t>(shifted.data() + 1, base.image.size()), "shifted.gguf");
    FAIL_CHECK("an image at an odd address was accepted");
  } catch (const Error& e) {
    const std::string message = e.what();
    CHECK_MESSAGE(message.find("shifted.gguf: tensor 't.a' data lies at a memory address that is not a multiple "
                               "of 8") != std::string::npos,
                  message);
  }
}

TEST_CASE("an empty tensor between two overlapping ones does not hide the overlap") {
  GgufWriter w;
  w.add_tensor("first", {64}, GgmlType::F32, std::vector<uint8_t>(256, 1));  // data [0, 256)
  w.add_tensor("empty", {0}, GgmlType::F32, std::vector<uint8_t>());
  w.add_tensor("third", {8}, GgmlType::F32, std::vector<uint8_t>(32, 3));
  const GgufLayout layout = w.layout();
  std::vector<uint8_t> image = w.to_bytes();
  REQUIRE_NOTHROW(GgufFile::from_memory(image, "valid.gguf"));
  patch<uint64_t>(image, layout.tensors[1].offset_offset, 32);
  patch<uint64_t>(image, layout.tensors[2].offset_offset, 64);  // inside "first"
  expect_rejected(image, "hidden_overlap.gguf", {"tensors 'first' and 'third' overlap"});
}

TEST_CASE("truncated in every section: the error names the section being read") {
  const Base base;
  const auto& tokens = base.key("tokenizer.ggml.tokens");
  const auto& name_key = base.key("general.name");
  const auto& tb = base.tensor("t.b");
  const auto& tc = base.tensor("t.c");
  struct Cut {
    uint64_t size;
    std::vector<std::string> expected;
  };
  const std::vector<Cut> cuts = {
      {0, {"magic", "file ends after 0 bytes"}},
      {3, {"magic"}},
      {6, {"version"}},
      {12, {"tensor count"}},
      {23, {"metadata count"}},
      {24, {"tensor count", "3 tensors cannot fit in a 24-byte file"}},
      {60, {"tensor count", "cannot fit"}},
      {100, {"value of metadata key 'general.description'", "string length 150"}},
      {name_key.begin + 4, {"key of metadata entry 2"}},
      {name_key.begin + 10, {"key of metadata entry 2", "string length"}},  // inside the key's bytes
      {name_key.type_offset + 2, {"value type of metadata key 'general.name'"}},
      {name_key.value_offset + 3, {"value of metadata key 'general.name'"}},
      {name_key.end - 1, {"value of metadata key 'general.name'", "string length"}},
      {tokens.value_offset + 2, {"tokenizer.ggml.tokens", "element type"}},
      {tokens.value_offset + 7, {"tokenizer.ggml.tokens", "count"}},
      {tokens.value_offset + 13, {"tokenizer.ggml.tokens"}},  // inside the first element's length
      {tokens.end - 2, {"tokenizer.ggml.tokens"}},               // inside the last element's bytes
      {base.layout.tensor_infos_begin + 3, {"name of tensor 0"}},
      {tb.n_dims_offset + 1, {"tensor 't.b' (dimension count)"}},
      {tb.dims_offset + 12, {"tensor 't.b' (dimension)"}},
      {tb.type_offset + 3, {"tensor 't.b' (type)"}},
      {tb.offset_offset + 7, {"tensor 't.b' (data offset)"}},
      {base.layout.tensor_infos_end, {"data section", "starts past the end"}},
      {base.layout.data_begin, {"tensor 't.a'", "lies outside the file"}},
      {tb.data_begin + 10, {"tensor 't.b'", "lies outside the file"}},
      {tc.data_begin + tc.n_bytes - 1, {"tensor 't.c'", "lies outside the file"}},
  };
  for (const Cut& cut : cuts) {
    CAPTURE(cut.size);
    std::vector<std::string> expected = cut.expected;
    expected.push_back("byte offset");
    const std::vector<uint8_t> image(base.image.begin(), base.image.begin() + static_cast<ptrdiff_t>(cut.size));
    expect_rejected(image, "cut_" + std::to_string(cut.size) + ".gguf", expected);
  }
}

TEST_CASE("cutting the valid file at EVERY byte offset throws an Error, never crashes") {
  const Base base;
  for (size_t size = 0; size < base.image.size(); ++size) {
    // Each prefix gets its own allocation of exactly that size, so AddressSanitizer catches a read past it.
    const std::vector<uint8_t> prefix(base.image.begin(), base.image.begin() + static_cast<ptrdiff_t>(size));
    try {
      GgufFile::from_memory(prefix, "prefix.gguf");
      FAIL("a file cut at " << size << " of " << base.image.size() << " bytes was accepted");
    } catch (const Error& e) {
      const std::string message = e.what();
      if (message.find("prefix.gguf") == std::string::npos || message.find("byte offset") == std::string::npos) {
        FAIL("cut at " << size << ": message lacks the file name or the byte offset: " << message);
      }
    }
  }
  CHECK_NOTHROW(GgufFile::from_memory(base.image, "whole.gguf"));
}

TEST_CASE("a vocabulary-only file (no tensors) may end without the final padding") {
  GgufWriter w;
  w.set("tokenizer.ggml.tokens", gguf_value::string_array({"a", "b"}));
  const std::vector<uint8_t> image = w.to_bytes();
  const GgufLayout layout = w.layout();
  const std::vector<uint8_t> unpadded(image.begin(), image.begin() + static_cast<ptrdiff_t>(layout.tensor_infos_end));
  const auto file = GgufFile::from_memory(unpadded, "vocab.gguf");
  CHECK(file->find_string_array("tokenizer.ggml.tokens")->size() == 2);
}

TEST_CASE("corrupting any single header byte never crashes: the result is a valid file or an Error") {
  const Base base;
  size_t accepted = 0, rejected = 0;
  for (uint64_t at = 0; at < base.layout.data_begin; ++at) {
    const uint8_t original = base.image[at];
    for (uint8_t value : {uint8_t{0x00}, uint8_t{0xFF}, static_cast<uint8_t>(original ^ 0x80),
                          static_cast<uint8_t>(original + 1)}) {
      if (value == original) continue;
      std::vector<uint8_t> image = base.image;
      image[at] = value;
      try {
        const auto file = GgufFile::from_memory(image, "flipped.gguf");
        touch_all_tensor_bytes(*file);
        ++accepted;
      } catch (const Error& e) {
        ++rejected;
        if (std::string(e.what()).find("flipped.gguf") == std::string::npos) FAIL("unnamed error: " << e.what());
      }
    }
  }
  MESSAGE("single-byte corruptions: " << accepted << " still valid, " << rejected << " rejected");
  CHECK(rejected > 0);
}

TEST_CASE("stories260K.gguf cut inside its header and its data is rejected") {
  const std::string path = std::string(PAGEDLLM_SHARED_DIR) + "/models/stories260K.gguf";
  std::ifstream in(path, std::ios::binary);
  REQUIRE_MESSAGE(in.good(), "missing " << path);
  const std::vector<uint8_t> image((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  REQUIRE(image.size() == 1185376);
  const uint64_t data_offset = GgufFile::from_memory(image, "stories")->data_offset();
  // Every byte of the metadata and tensor infos, then a stride through the data.
  for (size_t size = 0; size < image.size(); size += size < data_offset + 64 ? 1 : 4093) {
    const std::vector<uint8_t> prefix(image.begin(), image.begin() + static_cast<ptrdiff_t>(size));
    try {
      GgufFile::from_memory(prefix, "stories_cut.gguf");
      FAIL("stories260K cut at " << size << " was accepted");
    } catch (const Error&) {
    }
  }
}

TEST_CASE("opening files: missing, too small, a directory") {
  const fs::path dir = fs::temp_directory_path() / ("pagedllm_malformed_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string missing = (dir / "missing.gguf").string();
  CHECK_THROWS_WITH_AS(GgufFile::open(missing), doctest::Contains("missing.gguf: cannot open"), Error);
  const std::string tiny = (dir / "tiny.gguf").string();
  std::ofstream(tiny, std::ios::binary) << "GGUF";
  CHECK_THROWS_WITH_AS(GgufFile::open(tiny), doctest::Contains("too small for a GGUF header"), Error);
  const std::string empty = (dir / "empty.gguf").string();
  std::ofstream(empty, std::ios::binary).close();
  CHECK_THROWS_WITH_AS(GgufFile::open(empty), doctest::Contains("empty.gguf"), Error);
  CHECK_THROWS_WITH_AS(GgufFile::open(dir.string()), doctest::Contains("not a regular file"), Error);
  // A malformed file on disk goes through the same checks as one in memory.
  Base base;
  base.image[0] = 'X';
  const std::string bad = (dir / "bad.gguf").string();
  std::ofstream(bad, std::ios::binary).write(reinterpret_cast<const char*>(base.image.data()),
                                             static_cast<std::streamsize>(base.image.size()));
  CHECK_THROWS_WITH_AS(GgufFile::open(bad), doctest::Contains("bad.gguf: magic at byte offset 0"), Error);
  fs::remove_all(dir);
}
