// Acceptance for the tokenizers: every vocabulary in shared/tokenizer-tests encodes every one of its test strings
// to exactly the ids llama.cpp produced (the .out files), with add_special = false and parse_special = false; the
// Qwen-style byte-level BPE vocabulary of the synthetic qwen models encodes every string of tests/golden/tokenizer
// to llama.cpp's ids with parse_special off and on, and renders every id as llama.cpp does.
// The expected ids are read from the files; none are written here.
#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <nlohmann/json.hpp>

#include "model_loader/gguf.h"
#include "required_files.h"
#include "synthetic_golden.h"
#include "tokenizer/tokenizer.h"

namespace {

const std::filesystem::path kVectorDir = std::filesystem::path(PAGEDLLM_SHARED_DIR) / "tokenizer-tests";

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE_MESSAGE(in.good(), "cannot open ", path.string());
  std::ostringstream contents;
  contents << in.rdbuf();
  return contents.str();
}

// The .inp format: each test string is followed by "\n__ggml_vocab_test__\n"; the piece after the last separator
// is empty and not a test.
std::vector<std::string> split_inputs(const std::string& text) {
  static const std::string kSeparator = "\n__ggml_vocab_test__\n";
  std::vector<std::string> inputs;
  size_t position = 0;
  while (true) {
    const size_t next = text.find(kSeparator, position);
    if (next == std::string::npos) {
      if (position < text.size()) inputs.push_back(text.substr(position));
      break;
    }
    inputs.push_back(text.substr(position, next - position));
    position = next + kSeparator.size();
  }
  return inputs;
}

// The .out format: one line of space-separated ids per test string.
std::vector<std::vector<int32_t>> parse_outputs(const std::string& text) {
  std::vector<std::vector<int32_t>> outputs;
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    std::istringstream numbers(line);
    std::vector<int32_t> ids;
    long long id;
    while (numbers >> id) ids.push_back(static_cast<int32_t>(id));
    outputs.push_back(std::move(ids));
  }
  return outputs;
}

std::vector<std::filesystem::path> vocabularies_with_vectors() {
  std::vector<std::filesystem::path> found;
  if (!std::filesystem::is_directory(kVectorDir)) return found;
  for (const auto& entry : std::filesystem::directory_iterator(kVectorDir)) {
    const std::string name = entry.path().filename().string();
    if (name.size() > 9 && name.ends_with(".gguf.inp")) {
      found.push_back(entry.path().parent_path() / name.substr(0, name.size() - 4));
    }
  }
  std::sort(found.begin(), found.end());
  return found;
}

std::string printable(const std::string& text) {
  std::string out;
  for (unsigned char c : text) {
    if (c == '\n') out += "\\n";
    else if (c == '\t') out += "\\t";
    else if (c < 0x20) out += fmt::format("\\x{:02x}", c);
    else out += static_cast<char>(c);
  }
  return out;
}

// Encodes every case of a golden file ({text, parse_special, ids}, add_special on) and checks the ids. Returns how
// many were equal, and in how many parse_special made the encoding shorter (special tokens cut out of the text).
struct EncodingTally {
  size_t passed = 0;
  size_t with_special = 0;
};
EncodingTally check_encodings(const pagedllm::Tokenizer& tokenizer, const nlohmann::json& cases) {
  EncodingTally tally;
  for (const auto& test_case : cases) {
    const std::string text = test_case.at("text");
    const bool parse_special = test_case.at("parse_special");
    const std::vector<int32_t> expected = test_case.at("ids");
    const std::vector<int32_t> ids = tokenizer.encode(text, /*add_special=*/true, parse_special);
    CHECK_MESSAGE(ids == expected, "'", printable(text), "' parse_special ", parse_special, "\n  got      [",
                  fmt::format("{}", fmt::join(ids, " ")), "]\n  expected [",
                  fmt::format("{}", fmt::join(expected, " ")), "]");
    if (ids == expected) ++tally.passed;
    if (parse_special && ids.size() < tokenizer.encode(text, true, false).size()) ++tally.with_special;
  }
  return tally;
}

}  // namespace

TEST_CASE("every tokenizer test vector in shared/tokenizer-tests encodes to llama.cpp's ids") {
  const auto vocabularies = vocabularies_with_vectors();
  REQUIRE_MESSAGE(vocabularies.size() >= 5, "expected the 5 vocabularies with .inp/.out in ", kVectorDir.string());
  for (const auto& gguf_path : vocabularies) {
    const std::string name = gguf_path.filename().string();
    SUBCASE(name.c_str()) {
      const auto inputs = split_inputs(read_file(gguf_path.string() + ".inp"));
      const auto expected = parse_outputs(read_file(gguf_path.string() + ".out"));
      REQUIRE_MESSAGE(inputs.size() == expected.size(), name, ": ", inputs.size(), " inputs but ", expected.size(),
                      " expected lines");
      CHECK_MESSAGE(inputs.size() == 46, name, " has ", inputs.size(), " test strings");
      const auto file = pagedllm::GgufFile::open(gguf_path.string());
      const auto tokenizer = pagedllm::Tokenizer::from_gguf(*file);
      size_t passed = 0;
      for (size_t i = 0; i < inputs.size(); ++i) {
        const std::vector<int32_t> ids = tokenizer->encode(inputs[i], /*add_special=*/false, /*parse_special=*/false);
        CHECK_MESSAGE(ids == expected[i], name, " #", i, " '", printable(inputs[i]), "'\n  got      [",
                      fmt::format("{}", fmt::join(ids, " ")), "]\n  expected [",
                      fmt::format("{}", fmt::join(expected[i], " ")), "]");
        if (ids == expected[i]) ++passed;
      }
      MESSAGE(name, " (", tokenizer->model_name(), ", pre ", tokenizer->pre_tokenizer_name(), "): ", passed, "/",
              inputs.size(), " match");
    }
  }
}

namespace {

std::string hex_of(const std::string& bytes) {
  std::string out;
  for (unsigned char c : bytes) out += fmt::format("{:02x}", c);
  return out;
}

}  // namespace

TEST_CASE("the Qwen-style BPE vocabulary tokenizes and renders exactly as llama.cpp does") {
  const std::filesystem::path path =
      std::filesystem::path(PAGEDLLM_SOURCE_DIR) / "tests" / "golden" / "tokenizer" / "qwen2-tiny-bpe.json";
  const nlohmann::json golden = nlohmann::json::parse(read_file(path));
  INFO("golden file " << path.filename().string() << " (" << golden.at("reference").get<std::string>() << ")");
  const std::vector<uint8_t> bytes = pagedllm::test::synthetic_golden_model(golden);
  const auto file = pagedllm::GgufFile::from_memory(bytes, golden.at("model").get<std::string>() + ".gguf");
  const auto tokenizer = pagedllm::Tokenizer::from_gguf(*file);
  CHECK(tokenizer->model_name() == "gpt2");
  CHECK(tokenizer->pre_tokenizer_name() == "qwen2");
  CHECK_FALSE(tokenizer->add_bos());

  const auto& cases = golden.at("cases");
  REQUIRE(cases.size() >= 100);
  const EncodingTally tally = check_encodings(*tokenizer, cases);
  const size_t passed = tally.passed, with_special = tally.with_special;
  // The strings must reach the special-token path: control tokens cut out only with parse_special.
  CHECK(with_special >= 3);

  const auto& pieces = golden.at("pieces_hex");
  const auto& special_pieces = golden.at("special_pieces_hex");
  REQUIRE(static_cast<int32_t>(pieces.size()) == tokenizer->n_vocab());
  REQUIRE(static_cast<int32_t>(special_pieces.size()) == tokenizer->n_vocab());
  int32_t pieces_equal = 0;
  for (int32_t id = 0; id < tokenizer->n_vocab(); ++id) {
    const std::string piece = hex_of(tokenizer->token_to_piece(id, false));
    const std::string special = hex_of(tokenizer->token_to_piece(id, true));
    CHECK_MESSAGE(piece == pieces.at(static_cast<size_t>(id)).get<std::string>(), "piece of id ", id);
    CHECK_MESSAGE(special == special_pieces.at(static_cast<size_t>(id)).get<std::string>(),
                  "piece of id ", id, " with special tokens rendered");
    if (piece == pieces.at(static_cast<size_t>(id)).get<std::string>()) ++pieces_equal;
  }
  MESSAGE("qwen2-tiny BPE vocabulary: ", passed, "/", cases.size(), " encodings and ", pieces_equal, "/",
          tokenizer->n_vocab(), " pieces equal to llama.cpp's");
}

TEST_CASE("the Gemma 3 vocabulary of the real 270M file tokenizes and renders exactly as llama.cpp does") {
  const std::filesystem::path path =
      std::filesystem::path(PAGEDLLM_SOURCE_DIR) / "tests" / "golden" / "tokenizer" / "gemma-3-270m-spm.json";
  const nlohmann::json golden = nlohmann::json::parse(read_file(path));
  INFO("golden file " << path.filename().string() << " (" << golden.at("reference").get<std::string>() << ")");
  pagedllm::test::require_gemma3();
  const auto file = pagedllm::GgufFile::open(pagedllm::test::kGemma3Path);
  const auto tokenizer = pagedllm::Tokenizer::from_gguf(*file);
  CHECK(tokenizer->model_name() == "llama");
  CHECK_FALSE(tokenizer->add_space_prefix());
  REQUIRE(tokenizer->n_vocab() == golden.at("n_vocab").get<int32_t>());

  const auto& cases = golden.at("cases");
  REQUIRE(cases.size() >= 100);
  const EncodingTally tally = check_encodings(*tokenizer, cases);
  const size_t passed = tally.passed, with_special = tally.with_special;
  // The turn markers are control tokens: cut out only with parse_special.
  CHECK(with_special >= 3);

  const auto& piece_ids = golden.at("piece_ids");
  const auto& pieces = golden.at("pieces_hex");
  const auto& special_pieces = golden.at("special_pieces_hex");
  REQUIRE(pieces.size() == piece_ids.size());
  REQUIRE(special_pieces.size() == piece_ids.size());
  size_t pieces_equal = 0;
  for (size_t i = 0; i < piece_ids.size(); ++i) {
    const int32_t id = piece_ids.at(i);
    const std::string piece = hex_of(tokenizer->token_to_piece(id, false));
    const std::string special = hex_of(tokenizer->token_to_piece(id, true));
    CHECK_MESSAGE(piece == pieces.at(i).get<std::string>(), "piece of id ", id);
    CHECK_MESSAGE(special == special_pieces.at(i).get<std::string>(), "piece of id ", id,
                  " with special tokens rendered");
    if (piece == pieces.at(i).get<std::string>() && special == special_pieces.at(i).get<std::string>()) ++pieces_equal;
  }
  MESSAGE("Gemma 3 vocabulary: ", passed, "/", cases.size(), " encodings and ", pieces_equal, "/", piece_ids.size(),
          " pieces equal to llama.cpp's");
}
