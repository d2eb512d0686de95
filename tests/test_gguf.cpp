// GGUF writer -> reader round trips (every value type, nested arrays, alignment, tensor placement, v2/v3, files),
// the real stories260K file against the facts its README states (sizes, offsets, types), and the synthetic
// model builder (shapes of the presets against their published parameter counts).
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include <unistd.h>

#include "common/error.h"
#include "engine/model.h"
#include "tensor/dequantize.h"
#include "model_loader/gguf.h"
#include "model_loader/gguf_writer.h"
#include "direct_runner.h"
#include "model_loader/model_config.h"
#include "model_loader/synthetic_model.h"

using namespace pagedllm;
namespace fs = std::filesystem;

namespace {

const std::string kStoriesPath = std::string(PAGEDLLM_SHARED_DIR) + "/models/stories260K.gguf";

// A fresh directory removed at the end of the test.
struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() / ("pagedllm_test_gguf_" + std::to_string(::getpid()) + "_" +
                                        std::to_string(reinterpret_cast<uintptr_t>(this)));
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
};

std::vector<uint8_t> pattern_bytes(size_t n, uint8_t seed) {
  std::vector<uint8_t> bytes(n);  // [n]
  for (size_t i = 0; i < n; ++i) bytes[i] = static_cast<uint8_t>(seed + i * 7);
  return bytes;
}

// The writer state used by several round-trip tests: one key of every scalar type, arrays of each, nested arrays.
GgufWriter writer_with_every_value_type() {
  GgufWriter w;
  w.set("v.u8", gguf_value::u8(255));
  w.set("v.i8", gguf_value::i8(-128));
  w.set("v.u16", gguf_value::u16(65535));
  w.set("v.i16", gguf_value::i16(-32768));
  w.set("v.u32", gguf_value::u32(0xFFFFFFFFu));
  w.set("v.i32", gguf_value::i32(std::numeric_limits<int32_t>::min()));
  w.set("v.u64", gguf_value::u64(std::numeric_limits<uint64_t>::max()));
  w.set("v.i64", gguf_value::i64(std::numeric_limits<int64_t>::min()));
  w.set("v.f32", gguf_value::f32(-1.5e-7f));
  w.set("v.f64", gguf_value::f64(3.141592653589793));
  w.set("v.bool_true", gguf_value::boolean(true));
  w.set("v.bool_false", gguf_value::boolean(false));
  w.set("v.string", gguf_value::string("héllo\nwörld ▁ 🙂"));
  w.set("v.string_with_nul", gguf_value::string(std::string("a\0b", 3)));
  w.set("v.empty_string", gguf_value::string(""));
  w.set("a.u8", gguf_value::array(GgufValueType::UINT8, {gguf_value::u8(0), gguf_value::u8(200)}));
  w.set("a.i8", gguf_value::array(GgufValueType::INT8, {gguf_value::i8(-5), gguf_value::i8(5)}));
  w.set("a.u16", gguf_value::array(GgufValueType::UINT16, {gguf_value::u16(1), gguf_value::u16(60000)}));
  w.set("a.i16", gguf_value::array(GgufValueType::INT16, {gguf_value::i16(-30000)}));
  w.set("a.u32", gguf_value::array(GgufValueType::UINT32, {gguf_value::u32(7), gguf_value::u32(4000000000u)}));
  const int32_t ints[] = {-1, 0, 2147483647};
  w.set("a.i32", gguf_value::i32_array(ints));
  w.set("a.u64", gguf_value::array(GgufValueType::UINT64, {gguf_value::u64(1ull << 63)}));
  w.set("a.i64", gguf_value::array(GgufValueType::INT64, {gguf_value::i64(-(1ll << 40))}));
  const float floats[] = {0.25f, -2.0f, 1e30f};
  w.set("a.f32", gguf_value::f32_array(floats));
  w.set("a.f64", gguf_value::array(GgufValueType::FLOAT64, {gguf_value::f64(-1e300), gguf_value::f64(0.1)}));
  w.set("a.bool", gguf_value::array(GgufValueType::BOOL, {gguf_value::boolean(true), gguf_value::boolean(false)}));
  w.set("a.string", gguf_value::string_array({"x", "", "long string ✓"}));
  w.set("a.empty", gguf_value::array(GgufValueType::FLOAT32, {}));
  // [[1, 2], [], [3]] of u8, and an array of arrays of arrays of strings.
  w.set("a.nested", gguf_value::array(GgufValueType::ARRAY,
                                      {gguf_value::array(GgufValueType::UINT8, {gguf_value::u8(1), gguf_value::u8(2)}),
                                       gguf_value::array(GgufValueType::UINT8, {}),
                                       gguf_value::array(GgufValueType::UINT8, {gguf_value::u8(3)})}));
  w.set("a.nested3", gguf_value::array(
                         GgufValueType::ARRAY,
                         {gguf_value::array(GgufValueType::ARRAY, {gguf_value::string_array({"deep", "er"})})}));
  return w;
}

}  // namespace

TEST_CASE("every metadata value type survives writer -> reader, in order and with its stored type") {
  const GgufWriter w = writer_with_every_value_type();
  const std::vector<uint8_t> image = w.to_bytes();
  const auto file = GgufFile::from_memory(image, "values.gguf");

  REQUIRE(file->metadata().size() == w.metadata().size());
  for (size_t i = 0; i < w.metadata().size(); ++i) {
    CHECK(file->metadata()[i].first == w.metadata()[i].first);
    CHECK(file->metadata()[i].second.type == w.metadata()[i].second.type);
  }
  auto type_of = [&](const char* key) { return file->find(key)->type; };

  CHECK(type_of("v.u8") == GgufValueType::UINT8);
  CHECK(*file->find_uint("v.u8") == 255);
  CHECK(type_of("v.i8") == GgufValueType::INT8);
  CHECK(*file->find_int("v.i8") == -128);
  CHECK(*file->find_uint("v.u16") == 65535);
  CHECK(*file->find_int("v.i16") == -32768);
  CHECK(*file->find_uint("v.u32") == 0xFFFFFFFFu);
  CHECK(*file->find_int("v.i32") == std::numeric_limits<int32_t>::min());
  CHECK(*file->find_uint("v.u64") == std::numeric_limits<uint64_t>::max());
  CHECK(*file->find_int("v.i64") == std::numeric_limits<int64_t>::min());
  CHECK(type_of("v.f32") == GgufValueType::FLOAT32);
  CHECK(static_cast<float>(*file->find_float("v.f32")) == -1.5e-7f);
  CHECK(type_of("v.f64") == GgufValueType::FLOAT64);
  CHECK(*file->find_float("v.f64") == 3.141592653589793);
  CHECK(*file->find_bool("v.bool_true") == true);
  CHECK(*file->find_bool("v.bool_false") == false);
  CHECK(file->get_string("v.string") == "héllo\nwörld ▁ 🙂");
  CHECK(file->get_string("v.string_with_nul") == std::string("a\0b", 3));
  CHECK(file->get_string("v.empty_string").empty());

  CHECK(*file->find_int_array("a.u8") == std::vector<int64_t>{0, 200});
  CHECK(*file->find_int_array("a.i8") == std::vector<int64_t>{-5, 5});
  CHECK(*file->find_int_array("a.u16") == std::vector<int64_t>{1, 60000});
  CHECK(*file->find_int_array("a.i16") == std::vector<int64_t>{-30000});
  CHECK(*file->find_int_array("a.u32") == std::vector<int64_t>{7, 4000000000ll});
  CHECK(*file->find_int_array("a.i32") == std::vector<int64_t>{-1, 0, 2147483647});
  CHECK(static_cast<uint64_t>(file->find_int_array("a.u64")->at(0)) == (1ull << 63));
  CHECK(*file->find_int_array("a.i64") == std::vector<int64_t>{-(1ll << 40)});
  CHECK(*file->find_float_array("a.f32") == std::vector<float>{0.25f, -2.0f, 1e30f});
  const GgufArray* f64s = file->find_array("a.f64");
  REQUIRE(f64s != nullptr);
  CHECK(f64s->elem_type == GgufValueType::FLOAT64);
  CHECK(f64s->items.at(0).real == -1e300);
  CHECK(f64s->items.at(1).real == 0.1);
  const GgufArray* bools = file->find_array("a.bool");
  REQUIRE(bools != nullptr);
  CHECK(bools->elem_type == GgufValueType::BOOL);
  CHECK(bools->items.at(0).boolean == true);
  CHECK(bools->items.at(1).boolean == false);
  CHECK(*file->find_string_array("a.string") == std::vector<std::string>{"x", "", "long string ✓"});
  CHECK(file->find_array("a.empty")->items.empty());
  CHECK(file->find_array("a.empty")->elem_type == GgufValueType::FLOAT32);

  const GgufArray* nested = file->find_array("a.nested");
  REQUIRE(nested != nullptr);
  CHECK(nested->elem_type == GgufValueType::ARRAY);
  REQUIRE(nested->items.size() == 3);
  CHECK(nested->items[0].array->elem_type == GgufValueType::UINT8);
  CHECK(nested->items[0].array->items.size() == 2);
  CHECK(nested->items[0].array->items[1].integer == 2);
  CHECK(nested->items[1].array->items.empty());
  CHECK(nested->items[2].array->items[0].integer == 3);
  const GgufArray* nested3 = file->find_array("a.nested3");
  REQUIRE(nested3 != nullptr);
  const GgufArray& level2 = *nested3->items.at(0).array;
  CHECK(level2.elem_type == GgufValueType::ARRAY);
  const GgufArray& level3 = *level2.items.at(0).array;
  CHECK(level3.elem_type == GgufValueType::STRING);
  CHECK(level3.items.at(1).string == "er");

  SUBCASE("a file without tensors is valid and has no data section to check") {
    CHECK(file->tensors().empty());
  }
}

TEST_CASE("typed getters reject the wrong stored type with the key's name") {
  GgufWriter w;
  w.set_string("some.string", "text");
  w.set("some.negative", gguf_value::i32(-3));
  const auto image = w.to_bytes();
  const auto file = GgufFile::from_memory(image, "getters.gguf");
  CHECK_THROWS_WITH_AS(file->get_uint("some.string"), doctest::Contains("some.string"), Error);
  CHECK_THROWS_WITH_AS(file->find_uint("some.negative"), doctest::Contains("some.negative"), Error);
  CHECK_THROWS_WITH_AS(file->get_string("missing.key"), doctest::Contains("missing.key"), Error);
  CHECK_FALSE(file->find_float("missing.key").has_value());
}

TEST_CASE("writer replaces a key set twice, keeping its position") {
  GgufWriter w;
  w.set_u32("first", 1);
  w.set_u32("second", 2);
  w.set_string("first", "replaced");
  const auto image = w.to_bytes();
  const auto file = GgufFile::from_memory(image, "replace.gguf");
  REQUIRE(file->metadata().size() == 2);
  CHECK(file->metadata()[0].first == "first");
  CHECK(file->get_string("first") == "replaced");
}

TEST_CASE("tensors land at aligned offsets with their bytes, shapes and types intact") {
  // One tensor of each family: plain floats, a legacy 32-block quant, a K-quant, and shapes of rank 1..4.
  struct Spec {
    std::string name;
    std::vector<int64_t> ne;
    GgmlType type;
  };
  const std::vector<Spec> specs = {
      {"f32.vector", {5}, GgmlType::F32},            // 20 bytes: forces padding
      {"f16.matrix", {3, 7}, GgmlType::F16},         // 42 bytes
      {"q4_0.rank3", {64, 3, 2}, GgmlType::Q4_0},    // 2 blocks * 18 * 6 rows = 216 bytes
      {"q8_0.rank4", {32, 1, 2, 3}, GgmlType::Q8_0}, // 34 * 6 = 204 bytes
      {"q4_k.matrix", {256, 2}, GgmlType::Q4_K},     // 144 * 2 = 288 bytes
      {"empty.tensor", {0, 4}, GgmlType::F32},       // 0 bytes
      {"last.byte", {1}, GgmlType::F32},
  };
  for (uint32_t alignment : {32u, 64u, 16u, 128u, 8u, 4096u}) {
    CAPTURE(alignment);
    for (uint32_t version : {2u, 3u}) {
      CAPTURE(version);
      GgufWriter w(version);
      if (alignment != 32) w.set_alignment(alignment);
      w.set_string("general.architecture", "test");
      std::vector<std::vector<uint8_t>> contents;
      for (size_t i = 0; i < specs.size(); ++i) {
        const uint64_t n_bytes = GgufWriter::tensor_bytes(specs[i].ne, specs[i].type);
        contents.push_back(pattern_bytes(n_bytes, static_cast<uint8_t>(i * 31)));
        w.add_tensor(specs[i].name, specs[i].ne, specs[i].type, std::span<const uint8_t>(contents.back()));
      }
      const std::vector<uint8_t> image = w.to_bytes();
      const GgufLayout layout = w.layout();
      CHECK(layout.file_size == image.size());
      const auto file = GgufFile::from_memory(image, "tensors.gguf");

      CHECK(file->version() == version);
      CHECK(file->alignment() == alignment);
      CHECK(file->data_offset() == layout.data_begin);
      CHECK(file->data_offset() % alignment == 0);
      CHECK(file->data_offset() >= layout.tensor_infos_end);
      CHECK(file->data_offset() < layout.tensor_infos_end + alignment);
      REQUIRE(file->tensors().size() == specs.size());
      uint64_t expected_offset = 0;
      for (size_t i = 0; i < specs.size(); ++i) {
        const GgufTensorInfo& t = file->tensors()[i];
        CAPTURE(t.name);
        CHECK(t.name == specs[i].name);
        CHECK(t.type == specs[i].type);
        CHECK(t.n_dims == static_cast<int>(specs[i].ne.size()));
        for (int d = 0; d < 4; ++d) {
          CHECK(t.ne[d] == (d < static_cast<int>(specs[i].ne.size()) ? specs[i].ne[static_cast<size_t>(d)] : 1));
        }
        CHECK(t.offset % alignment == 0);
        CHECK(t.offset == expected_offset);
        CHECK(t.n_bytes == contents[i].size());
        CHECK(t.data == image.data() + file->data_offset() + t.offset);
        CHECK(t.data == image.data() + layout.tensors[i].data_begin);
        if (!contents[i].empty()) CHECK(std::memcmp(t.data, contents[i].data(), contents[i].size()) == 0);
        CHECK(file->find_tensor(specs[i].name) == &t);
        expected_offset += (t.n_bytes + alignment - 1) / alignment * alignment;
      }
      // The file ends with the last tensor padded to the alignment, like gguf-py's writer.
      CHECK(image.size() == file->data_offset() + expected_offset);
      // Padding between sections and after tensors is zero.
      for (uint64_t at = layout.tensor_infos_end; at < layout.data_begin; ++at) REQUIRE(image[at] == 0);
      const auto& last = layout.tensors.back();
      for (uint64_t at = last.data_begin + last.n_bytes; at < image.size(); ++at) REQUIRE(image[at] == 0);
    }
  }
}

TEST_CASE("writer refuses tensors whose data does not match the shape, and duplicate names") {
  GgufWriter w;
  const std::vector<uint8_t> three_floats(12);
  CHECK_THROWS_WITH_AS(w.add_tensor("t", {4}, GgmlType::F32, std::span<const uint8_t>(three_floats)),
                       doctest::Contains("needs 16 bytes"), Error);
  CHECK(w.tensor_count() == 0);
  CHECK_THROWS_WITH_AS(w.add_tensor("q", {33}, GgmlType::Q4_0, std::vector<uint8_t>(18)),
                       doctest::Contains("block size"), Error);
  w.add_tensor("t", {3}, GgmlType::F32, std::span<const uint8_t>(three_floats));
  CHECK_THROWS_WITH_AS(w.add_tensor("t", {3}, GgmlType::F32, std::span<const uint8_t>(three_floats)),
                       doctest::Contains("duplicate"), Error);
  CHECK_THROWS_AS(w.set_alignment(48), Error);
  CHECK_THROWS_AS(w.set_alignment(0), Error);
  CHECK_THROWS_AS(w.set_alignment(1), Error);  // the reader refuses alignments below 8
  CHECK_THROWS_AS(w.set_alignment(4), Error);
  CHECK_THROWS_AS(gguf_value::array(GgufValueType::UINT8, {gguf_value::u16(1)}), Error);
}

TEST_CASE("generated tensors are filled in place and equal to stored ones") {
  GgufWriter stored, generated;
  const std::vector<uint8_t> bytes = pattern_bytes(4 * 48, 3);
  stored.add_tensor("t", {48}, GgmlType::F32, std::span<const uint8_t>(bytes));
  generated.add_tensor_generated("t", {48}, GgmlType::F32, [&](std::span<uint8_t> out) {
    REQUIRE(out.size() == bytes.size());
    std::memcpy(out.data(), bytes.data(), bytes.size());
  });
  CHECK(stored.to_bytes() == generated.to_bytes());
}

TEST_CASE("write_file produces the same bytes as to_bytes and never leaves a partial file") {
  TempDir dir;
  GgufWriter w = writer_with_every_value_type();
  w.set_alignment(64);
  const std::vector<uint8_t> weights = pattern_bytes(4 * 100, 9);
  w.add_tensor("a", {100}, GgmlType::F32, std::span<const uint8_t>(weights));
  w.add_tensor_generated("b", {10, 3}, GgmlType::F32, [](std::span<uint8_t> out) {
    for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<uint8_t>(255 - i);
  });
  const fs::path path = dir.path / "model.gguf";
  w.write_file(path.string());
  const auto file = GgufFile::open(path.string());
  CHECK(file->path() == path.string());
  CHECK(file->tensors().size() == 2);
  CHECK(file->alignment() == 64);
  const std::vector<uint8_t> expected = w.to_bytes();
  REQUIRE(file->file_size() == expected.size());
  CHECK(std::memcmp(file->tensors()[0].data - file->data_offset() - file->tensors()[0].offset, expected.data(),
                    expected.size()) == 0);
  // Only the finished file is in the folder: the temporary was renamed, not copied.
  size_t entries = 0;
  for (const auto& entry : fs::directory_iterator(dir.path)) {
    ++entries;
    CHECK(entry.path().filename() == "model.gguf");
  }
  CHECK(entries == 1);

  SUBCASE("a failing filler leaves neither the file nor a temporary behind") {
    GgufWriter failing;
    failing.add_tensor_generated("x", {4}, GgmlType::F32, [](std::span<uint8_t>) { fail("generator broke"); });
    const fs::path broken = dir.path / "broken.gguf";
    CHECK_THROWS_WITH_AS(failing.write_file(broken.string()), doctest::Contains("generator broke"), Error);
    CHECK_FALSE(fs::exists(broken));
    size_t count = 0;
    for (const auto& entry : fs::directory_iterator(dir.path)) count += entry.path().filename() != "model.gguf";
    CHECK(count == 0);
  }
  SUBCASE("an unwritable destination is an Error naming the path") {
    const fs::path nowhere = dir.path / "no_such_dir" / "x.gguf";
    CHECK_THROWS_WITH_AS(w.write_file(nowhere.string()), doctest::Contains("no_such_dir"), Error);
  }
}

TEST_CASE("stories260K.gguf: layout facts (header, alignment, tensor offsets and types)") {
  REQUIRE_MESSAGE(fs::exists(kStoriesPath), "missing test model " << kStoriesPath);
  const auto file = GgufFile::open(kStoriesPath);
  CHECK(file->version() == 3);
  CHECK(file->file_size() == 1185376);
  CHECK(file->tensors().size() == 48);
  CHECK_FALSE(file->has("general.alignment"));
  CHECK(file->alignment() == 32);
  CHECK(file->data_offset() == 14176);

  const GgufTensorInfo* embd = file->find_tensor("token_embd.weight");
  REQUIRE(embd != nullptr);
  CHECK(embd->n_dims == 2);
  CHECK(embd->ne[0] == 64);
  CHECK(embd->ne[1] == 512);
  CHECK(embd->type == GgmlType::F32);
  CHECK(embd->offset == 0);
  CHECK(embd->n_bytes == 131072);
  const GgufTensorInfo* output_norm = file->find_tensor("output_norm.weight");
  REQUIRE(output_norm != nullptr);
  CHECK(output_norm->offset == 131072);
  CHECK(output_norm->shape_string() == "[64]");
  const GgufTensorInfo* output = file->find_tensor("output.weight");
  REQUIRE(output != nullptr);
  CHECK(output->offset == 131328);
  // README: output.weight is stored separately but holds the same values as token_embd.weight.
  CHECK(std::memcmp(output->data, embd->data, embd->n_bytes) == 0);

  uint64_t end = 0;
  for (const GgufTensorInfo& t : file->tensors()) end = std::max(end, t.offset + t.n_bytes);
  CHECK(end == 1171200);
  CHECK(file->data_offset() + end == file->file_size());

  const GgufValue* separator = file->find("tokenizer.ggml.seperator_token_id");
  REQUIRE(separator != nullptr);
  CHECK(*file->find_uint("tokenizer.ggml.seperator_token_id") == 0xFFFFFFFFu);
  CHECK(file->get_string("general.architecture") == "llama");
  CHECK(file->get_string("tokenizer.ggml.model") == "llama");
  CHECK(file->find_string_array("tokenizer.ggml.tokens")->size() == 512);
  CHECK_FALSE(file->has("llama.rope.freq_base"));

  SUBCASE("the same bytes through from_memory give the same result") {
    std::span<const uint8_t> bytes(embd->data - file->data_offset(), file->file_size());
    const auto copy = GgufFile::from_memory(bytes, "copy");
    CHECK(copy->tensors().size() == 48);
    CHECK(copy->metadata().size() == file->metadata().size());
  }
}

TEST_CASE("stories260K rewritten with general.alignment 8 (tensors off 32-byte boundaries) gives identical logits") {
  // The GGUF specification allows any multiple of 8, so the kernels must read weights that are only 8-aligned
  // exactly as they read the default 32-aligned ones.
  const std::string original = PAGEDLLM_SHARED_DIR "/models/stories260K.gguf";
  const fs::path dir = fs::temp_directory_path() / ("pagedllm-align8-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string realigned = (dir / "stories-align8.gguf").string();
  {
    auto source = GgufFile::open(original);
    GgufWriter writer(source->version());
    for (const auto& [key, value] : source->metadata()) writer.set(key, value);
    writer.set_alignment(8);
    for (const GgufTensorInfo& t : source->tensors()) {
      writer.add_tensor(t.name, std::vector<int64_t>(t.ne, t.ne + t.n_dims), t.type,
                        std::span<const uint8_t>(t.data, t.n_bytes));
    }
    // Padding metadata until the data section starts off a 32-byte boundary, so that the tensors do too.
    for (int pad = 1; writer.layout().data_begin % 32 == 0; ++pad) {
      writer.set_string("pagedllm.test.padding", std::string(static_cast<size_t>(pad), '.'));
    }
    writer.write_file(realigned);
  }
  {
    const auto file = GgufFile::open(realigned);
    CHECK(file->alignment() == 8);
    int off_32 = 0;
    for (const GgufTensorInfo& t : file->tensors()) {
      CHECK(reinterpret_cast<uintptr_t>(t.data) % 8 == 0);
      off_32 += reinterpret_cast<uintptr_t>(t.data) % 32 != 0;
    }
    REQUIRE(off_32 > 0);
  }
  auto last_logits = [](const std::string& path) {
    auto model = Model::load(path);
    const RunnerConfig config = test::runner_config_with_blocks(*model, 4, 16, 64, 1, KvDtype::F32);
    test::DirectRunner runner(*model, config);
    const SeqId seq = runner.create_sequence();
    const std::vector<int32_t> prompt = {1, 403, 407, 261, 378};
    const test::DirectWork work{seq, std::span<const int32_t>(prompt), true};
    std::span<const float> logits = runner.step(std::span(&work, 1));
    return std::vector<float>(logits.begin(), logits.end());
  };
  const std::vector<float> expected = last_logits(original);
  const std::vector<float> actual = last_logits(realigned);
  REQUIRE(expected.size() == 512);
  CHECK(actual == expected);  // the same bytes through the same kernels: bit for bit
  fs::remove_all(dir);
}

TEST_CASE("stories260K.gguf: model config and parameter count") {
  const auto file = GgufFile::open(kStoriesPath);
  const ModelConfig c = read_model_config(*file);
  CHECK(c.architecture == "llama");
  CHECK(c.n_head == 8);
  CHECK(c.n_head_kv == 4);
  CHECK(c.head_dim == 8);
  CHECK(c.n_gqa() == 2);
  CHECK(c.n_ff == 172);
  CHECK(c.n_layer == 5);
  CHECK(c.n_embd == 64);
  CHECK(c.n_vocab == 512);
  CHECK(c.n_ctx_train == 2048);
  CHECK(c.rope_freq_base == 10000.0f);
  CHECK(c.rms_eps == doctest::Approx(1e-5));
  CHECK_FALSE(c.tied_embeddings);
  int64_t parameters = 0;
  for (const GgufTensorInfo& t : file->tensors()) parameters += t.n_elements();
  CHECK(parameters == 292800);
}

// ---------------------------------------------------------------- synthetic models

TEST_CASE("synthetic presets carry the real shapes and their published parameter counts") {
  struct Expected {
    const char* preset;
    int64_t n_vocab, n_embd, n_layer, n_head, n_head_kv, n_ff, n_ctx;
    float freq_base;
    bool tied;
    int64_t parameters;  // from the models' published figures
  };
  const Expected table[] = {
      {"llama-3-8b", 128256, 4096, 32, 32, 8, 14336, 8192, 500000.0f, false, 8030261248},
      {"llama-2-7b", 32000, 4096, 32, 32, 32, 11008, 4096, 10000.0f, false, 6738415616},
      {"mistral-7b", 32000, 4096, 32, 32, 8, 14336, 32768, 1000000.0f, false, 7241732096},
      {"smollm2-135m", 49152, 576, 30, 9, 3, 1536, 8192, 100000.0f, true, 134515008},
      {"tinyllama-1.1b", 32000, 2048, 22, 32, 4, 5632, 2048, 10000.0f, false, 1100048384},
  };
  for (const Expected& e : table) {
    CAPTURE(e.preset);
    const SyntheticModelSpec s = synthetic_spec(e.preset);
    CHECK(s.n_vocab == e.n_vocab);
    CHECK(s.n_embd == e.n_embd);
    CHECK(s.n_layer == e.n_layer);
    CHECK(s.n_head == e.n_head);
    CHECK(s.n_head_kv == e.n_head_kv);
    CHECK(s.n_ff == e.n_ff);
    CHECK(s.n_ctx == e.n_ctx);
    CHECK(s.rope_freq_base == e.freq_base);
    CHECK(s.tied_embeddings == e.tied);
    CHECK(synthetic_parameter_count(s) == e.parameters);
    // The writer's layout (no tensor data generated) holds exactly those parameters, as F32.
    const GgufLayout layout = synthetic_model_writer(s).layout();
    uint64_t bytes = 0;
    for (const auto& t : layout.tensors) bytes += t.n_bytes;
    CHECK(bytes == static_cast<uint64_t>(e.parameters) * 4);
    CHECK(layout.tensors.size() == static_cast<size_t>(2 + !e.tied + 9 * e.n_layer));
  }
  CHECK_THROWS_WITH_AS(synthetic_spec("gpt-5"), doctest::Contains("llama-3-8b"), Error);
}

TEST_CASE("a tiny synthetic model loads end to end: config, the llama tensor names and shapes, weights, vocabulary") {
  SyntheticModelSpec spec = synthetic_spec("tiny");
  const std::vector<uint8_t> image = build_synthetic_gguf(spec);
  const auto file = GgufFile::from_memory(image, "tiny.gguf");
  const ModelConfig c = read_model_config(*file);
  CHECK(c.n_vocab == spec.n_vocab);
  CHECK(c.n_embd == spec.n_embd);
  CHECK(c.n_layer == spec.n_layer);
  CHECK(c.n_head == spec.n_head);
  CHECK(c.n_head_kv == spec.n_head_kv);
  CHECK(c.head_dim == spec.n_embd / spec.n_head);
  CHECK(c.n_ff == spec.n_ff);
  CHECK(c.n_ctx_train == spec.n_ctx);
  CHECK(c.rope_freq_base == spec.rope_freq_base);
  CHECK_FALSE(c.tied_embeddings);

  const int64_t hd = spec.n_embd / spec.n_head;
  auto check_shape = [&](const std::string& name, std::vector<int64_t> ne) {
    CAPTURE(name);
    const GgufTensorInfo* t = file->find_tensor(name);
    REQUIRE(t != nullptr);
    REQUIRE(t->n_dims == static_cast<int>(ne.size()));
    for (size_t d = 0; d < ne.size(); ++d) CHECK(t->ne[d] == ne[d]);
  };
  check_shape("token_embd.weight", {spec.n_embd, spec.n_vocab});
  check_shape("output_norm.weight", {spec.n_embd});
  check_shape("output.weight", {spec.n_embd, spec.n_vocab});
  for (int layer = 0; layer < spec.n_layer; ++layer) {
    const std::string blk = "blk." + std::to_string(layer) + ".";
    check_shape(blk + "attn_norm.weight", {spec.n_embd});
    check_shape(blk + "attn_q.weight", {spec.n_embd, spec.n_head * hd});
    check_shape(blk + "attn_k.weight", {spec.n_embd, spec.n_head_kv * hd});
    check_shape(blk + "attn_v.weight", {spec.n_embd, spec.n_head_kv * hd});
    check_shape(blk + "attn_output.weight", {spec.n_head * hd, spec.n_embd});
    check_shape(blk + "ffn_norm.weight", {spec.n_embd});
    check_shape(blk + "ffn_gate.weight", {spec.n_embd, spec.n_ff});
    check_shape(blk + "ffn_up.weight", {spec.n_embd, spec.n_ff});
    check_shape(blk + "ffn_down.weight", {spec.n_ff, spec.n_embd});
  }
  CHECK(file->tensors().size() == static_cast<size_t>(3 + 9 * spec.n_layer));

  // Norm gains are exactly 1; weights look like N(0, 0.02).
  const GgufTensorInfo* norm = file->find_tensor("blk.1.ffn_norm.weight");
  for (int64_t i = 0; i < spec.n_embd; ++i) {
    float x;
    std::memcpy(&x, norm->data + 4 * i, 4);
    REQUIRE(x == 1.0f);
  }
  const GgufTensorInfo* w = file->find_tensor("blk.0.ffn_up.weight");
  double sum = 0, sum_sq = 0;
  for (int64_t i = 0; i < w->n_elements(); ++i) {
    float x;
    std::memcpy(&x, w->data + 4 * i, 4);
    sum += x;
    sum_sq += double(x) * x;
  }
  const double mean = sum / w->n_elements();
  const double stddev = std::sqrt(sum_sq / w->n_elements() - mean * mean);
  CHECK(std::abs(mean) < 0.001);
  CHECK(stddev == doctest::Approx(0.02).epsilon(0.05));
  // Different tensors get different random streams.
  CHECK(std::memcmp(file->find_tensor("blk.0.ffn_up.weight")->data, file->find_tensor("blk.0.ffn_gate.weight")->data,
                    64) != 0);

  // Vocabulary: SPM-style, as llama.cpp expects for tokenizer.ggml.model "llama".
  CHECK(file->get_string("tokenizer.ggml.model") == "llama");
  const auto tokens = *file->find_string_array("tokenizer.ggml.tokens");
  const auto scores = *file->find_float_array("tokenizer.ggml.scores");
  const auto types = *file->find_int_array("tokenizer.ggml.token_type");
  REQUIRE(tokens.size() == static_cast<size_t>(spec.n_vocab));
  CHECK(scores.size() == tokens.size());
  CHECK(types.size() == tokens.size());
  CHECK(tokens[0] == "<unk>");
  CHECK(tokens[1] == "<s>");
  CHECK(tokens[2] == "</s>");
  CHECK(tokens[3] == "<0x00>");
  CHECK(tokens[3 + 0x41] == "<0x41>");
  CHECK(tokens[258] == "<0xFF>");
  CHECK(types[0] == 2);
  CHECK(types[1] == 3);
  CHECK(types[2] == 3);
  CHECK(types[3] == 6);
  CHECK(types[258] == 6);
  CHECK(types[259] == 1);
  CHECK(std::set<std::string>(tokens.begin(), tokens.end()).size() == tokens.size());
  CHECK(*file->find_uint("tokenizer.ggml.bos_token_id") == 1);
  CHECK(*file->find_uint("tokenizer.ggml.eos_token_id") == 2);
  CHECK(*file->find_uint("tokenizer.ggml.unknown_token_id") == 0);

  SUBCASE("generation is deterministic in the seed") {
    CHECK(build_synthetic_gguf(spec) == image);
    spec.seed += 1;
    const auto other = build_synthetic_gguf(spec);
    REQUIRE(other.size() == image.size());
    CHECK(other != image);
  }
  SUBCASE("tied embeddings drop output.weight") {
    spec.tied_embeddings = true;
    const auto tied_image = build_synthetic_gguf(spec);
    const auto tied = GgufFile::from_memory(tied_image, "tied.gguf");
    CHECK(tied->find_tensor("output.weight") == nullptr);
    CHECK(read_model_config(*tied).tied_embeddings);
  }
  SUBCASE("written to a file, the model is byte-identical") {
    TempDir dir;
    const fs::path path = dir.path / "tiny.gguf";
    write_synthetic_gguf(spec, path.string());
    const auto from_disk = GgufFile::open(path.string());
    REQUIRE(from_disk->file_size() == image.size());
    CHECK(std::memcmp(from_disk->tensors()[0].data - from_disk->data_offset(), image.data(), image.size()) == 0);
  }
}

TEST_CASE("synthetic vocabulary: every piece's prefixes are pieces, so SPM merges can reach it") {
  const auto tokens = synthetic_vocab(5000);
  REQUIRE(tokens.size() == 5000);
  const std::set<std::string> all(tokens.begin(), tokens.end());
  CHECK(all.size() == tokens.size());
  const std::string marker = "\xE2\x96\x81";
  CHECK(tokens[259] == marker);
  for (size_t id = 260; id < tokens.size(); ++id) {
    const std::string& piece = tokens[id];
    const size_t body = piece.rfind(marker, 0) == 0 ? marker.size() : 0;
    REQUIRE(piece.size() > body);
    // Dropping the last letter gives an earlier piece (or the bare marker).
    const std::string prefix = piece.substr(0, piece.size() - 1);
    if (!prefix.empty()) CHECK_MESSAGE(all.count(prefix) == 1, piece);
  }
  CHECK_THROWS_AS(validate_synthetic_spec([] {
                    SyntheticModelSpec s;
                    s.n_vocab = 100;
                    return s;
                  }()),
                  Error);
}

TEST_CASE("synthetic models in quantized types: every weight decodes to about N(0, 0.02)") {
  for (GgmlType type : {GgmlType::F16, GgmlType::BF16, GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_1,
                        GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K}) {
    CAPTURE(type_name(type));
    SyntheticModelSpec spec = synthetic_spec("tiny");
    spec.weight_type = type;
    const auto image = build_synthetic_gguf(spec);
    const auto file = GgufFile::from_memory(image, "quantized.gguf");
    const ModelConfig c = read_model_config(*file);
    CHECK(c.n_embd == spec.n_embd);
    for (const GgufTensorInfo& t : file->tensors()) {
      CAPTURE(t.name);
      CHECK(t.type == (t.n_dims == 1 ? GgmlType::F32 : type));
    }
    const GgufTensorInfo* w = file->find_tensor("blk.1.attn_q.weight");
    std::vector<float> row(static_cast<size_t>(w->ne[0]));  // [ne0]
    double sum_sq = 0;
    const size_t bytes_per_row = w->n_bytes / static_cast<size_t>(w->rows());
    for (int64_t r = 0; r < w->rows(); ++r) {
      dequantize_row(type, w->data + r * bytes_per_row, row.data(), w->ne[0]);
      for (float x : row) sum_sq += double(x) * x;
    }
    CHECK(std::sqrt(sum_sq / w->n_elements()) == doctest::Approx(0.02).epsilon(0.15));
  }
}

TEST_CASE("K-quant rows that are not whole super-blocks fall back like llama.cpp's quantizer") {
  CHECK(weight_type_for_row(GgmlType::Q4_K, 4096) == GgmlType::Q4_K);
  CHECK(weight_type_for_row(GgmlType::Q4_K, 576) == GgmlType::Q5_0);
  CHECK(weight_type_for_row(GgmlType::Q5_K, 576) == GgmlType::Q5_1);
  CHECK(weight_type_for_row(GgmlType::Q6_K, 576) == GgmlType::Q8_0);
  CHECK(weight_type_for_row(GgmlType::Q4_0, 172) == GgmlType::F16);
  CHECK(weight_type_for_row(GgmlType::F32, 172) == GgmlType::F32);
}

TEST_CASE("smollm2-135m synthetic (Q4_K, n_embd 576) builds and reads back with its real config") {
  SyntheticModelSpec spec = synthetic_spec("smollm2-135m");
  spec.weight_type = GgmlType::Q4_K;
  spec.n_layer = 2;  // real layer shapes, fewer of them: the reference Q4_K quantizer is slow
  const auto image = build_synthetic_gguf(spec);
  const auto file = GgufFile::from_memory(image, "smollm2.gguf");
  const ModelConfig c = read_model_config(*file);
  CHECK(c.n_head == 9);
  CHECK(c.n_head_kv == 3);
  CHECK(c.head_dim == 64);
  CHECK(c.n_vocab == 49152);
  CHECK(c.tied_embeddings);
  CHECK(c.rope_freq_base == 100000.0f);
  // n_embd 576 rows are not whole Q4_K super-blocks; n_ff 1536 rows are.
  CHECK(file->find_tensor("blk.0.attn_q.weight")->type == GgmlType::Q5_0);
  CHECK(file->find_tensor("blk.0.ffn_down.weight")->type == GgmlType::Q4_K);
  int64_t parameters = 0;
  for (const GgufTensorInfo& t : file->tensors()) parameters += t.n_elements();
  CHECK(parameters == synthetic_parameter_count(spec));
  // Embeddings (49152 x 576, tied) plus two real-shaped layers.
  CHECK(parameters == 49152 * 576 + 576 + 2 * 3540096);
}
