// Tokenizer behaviour beyond the llama.cpp vectors: round trips, streaming, special tokens, the pre-tokenizer
// table, Unicode classes, and clear errors on bad metadata.
#include <doctest/doctest.h>

#include "required_files.h"
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "common/error.h"
#include "common/warning.h"
#include "model_loader/gguf.h"
#include "model_loader/gguf_writer.h"
#include "model_loader/synthetic_bpe.h"
#include "model_loader/synthetic_model.h"
#include "tokenizer/pre_tokenizer.h"
#include "tokenizer/tokenizer.h"
#include "common/unicode.h"
#include "tokenizer/word_splitter.h"

using namespace pagedllm;

namespace {

const std::string kVectorDir = std::string(PAGEDLLM_SHARED_DIR) + "/tokenizer-tests/";
const std::string kSmolLmPath = std::string(PAGEDLLM_SOURCE_DIR) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";

struct LoadedTokenizer {
  std::unique_ptr<GgufFile> file;
  std::unique_ptr<Tokenizer> tokenizer;
};

LoadedTokenizer load(const std::string& path) {
  LoadedTokenizer loaded;
  loaded.file = GgufFile::open(path);
  loaded.tokenizer = Tokenizer::from_gguf(*loaded.file);
  return loaded;
}

LoadedTokenizer load_vocab(const std::string& name) { return load(kVectorDir + "ggml-vocab-" + name + ".gguf"); }

bool have_smollm() {
  pagedllm::test::require_smollm2();
  return true;
}

// Text that exercises the pre-tokenizers and the byte fallback: code, CJK, emoji (including ZWJ sequences and
// flags), combining marks, RTL scripts, digits of several scripts, whitespace runs of every kind.
const std::vector<std::string> kSamples = {
    "Hello world",
    "The quick brown fox jumps over the lazy dog. It's 2024; we've got 1234567 reasons!",
    "int main(int argc, char** argv) {\n    printf(\"%d\\n\", argc);\n    return 0;\n}\n",
    "def f(x):\n\treturn [i ** 2 for i in range(x) if i % 3 == 0]  # comment\n",
    "日本語のテキストと中文文本，还有한국어 텍스트。",
    "Emoji: 😀🎉👍🏽 👨‍👩‍👧‍👦 🇫🇷🇯🇵 ❤️",
    "Combining: e\xCC\x81 a\xCC\x88 n\xCC\x83 Z\xCC\xB7\xCC\x9B\xCD\x8A",
    "Arabic: مرحبا بالعالم; Hebrew: שלום עולם; Devanagari: नमस्ते दुनिया",
    "Digits: ٠١٢٣٤٥٦٧٨٩ ０１２３ ⅫⅣ 3.14159 1,000,000",
    "   leading spaces, trailing spaces   ",
    "\n\n\nnewlines\r\n\r\nand\ttabs\t\t\f end",
    "Unicode spaces:\u00A0\u2003\u3000\u202F|\u2028|\u2029|\u0085|",
    "~tilde ^caret `backtick` $dollar <angle> |pipe| @at #hash",
    "Contractions: I'm you're they've she'll he'd it's don't DON'T Y'ALL",
    "        ",
    "a",
    "",
};

// A multi-kilobyte mixed text: every sample, several times, joined by varied separators.
std::string mixed_text() {
  std::string text;
  const char* separators[] = {"\n", " ", "\n\n", "\t", "  "};
  for (int round = 0; round < 6; ++round) {
    for (size_t i = 0; i < kSamples.size(); ++i) {
      text += kSamples[i];
      text += separators[(i + round) % 5];
    }
  }
  return text;
}

std::string concatenated_pieces(const Tokenizer& tokenizer, const std::vector<int32_t>& ids) {
  std::string text;
  for (int32_t id : ids) text += tokenizer.token_to_piece(id);
  return text;
}

// Whether `bytes` is well-formed UTF-8 (shortest forms, no surrogates, <= U+10FFFF).
bool is_valid_utf8(std::string_view bytes) {
  size_t i = 0;
  while (i < bytes.size()) {
    const auto lead = static_cast<uint8_t>(bytes[i]);
    size_t length;
    uint32_t cp;
    if (lead < 0x80) { length = 1; cp = lead; }
    else if ((lead & 0xE0) == 0xC0) { length = 2; cp = lead & 0x1F; }
    else if ((lead & 0xF0) == 0xE0) { length = 3; cp = lead & 0x0F; }
    else if ((lead & 0xF8) == 0xF0) { length = 4; cp = lead & 0x07; }
    else return false;
    if (i + length > bytes.size()) return false;
    for (size_t k = 1; k < length; ++k) {
      const auto byte = static_cast<uint8_t>(bytes[i + k]);
      if ((byte & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (byte & 0x3F);
    }
    static constexpr uint32_t kMinimum[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMinimum[length] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += length;
  }
  return true;
}

std::string error_of(const std::function<void()>& action) {
  try {
    action();
  } catch (const Error& error) {
    return error.what();
  }
  return "";
}

// A minimal, valid byte-level BPE tokenizer file: the 256 byte characters, a few merges, one control token.
GgufWriter bpe_writer(const std::string& pre = "gpt-2") {
  GgufWriter writer;
  writer.set_string("general.architecture", "llama");
  writer.set_string("tokenizer.ggml.model", "gpt2");
  writer.set_string("tokenizer.ggml.pre", pre);
  std::vector<std::string> tokens;
  int next_extra = 0;
  for (int byte = 0; byte < 256; ++byte) {
    // The GPT-2 alphabet: printable bytes are themselves, the others U+0100 + their rank.
    const bool printable = (byte >= 0x21 && byte <= 0x7E) || (byte >= 0xA1 && byte <= 0xAC) || byte >= 0xAE;
    std::string text;
    unicode::append_utf8(text, printable ? byte : 0x100 + next_extra++);
    tokens.push_back(text);
  }
  tokens.push_back("he");
  tokens.push_back("ll");
  tokens.push_back("hell");
  tokens.push_back("<|endoftext|>");
  writer.set("tokenizer.ggml.tokens", gguf_value::string_array(tokens));
  writer.set("tokenizer.ggml.merges", gguf_value::string_array({"h e", "l l", "he ll"}));
  std::vector<int32_t> types(tokens.size(), 1);
  types.back() = 3;
  writer.set("tokenizer.ggml.token_type", gguf_value::i32_array(types));
  writer.set_u32("tokenizer.ggml.eos_token_id", static_cast<uint32_t>(tokens.size() - 1));
  return writer;
}

struct InMemoryTokenizer {
  std::vector<uint8_t> image;
  std::unique_ptr<GgufFile> file;
  std::unique_ptr<Tokenizer> tokenizer;
};

InMemoryTokenizer build(const GgufWriter& writer) {
  InMemoryTokenizer built;
  built.image = writer.to_bytes();
  built.file = GgufFile::from_memory(built.image, "test.gguf");
  built.tokenizer = Tokenizer::from_gguf(*built.file);
  return built;
}

std::string build_error(const GgufWriter& writer) {
  return error_of([&] { build(writer); });
}

// A small SentencePiece vocabulary written by hand: byte tokens for every byte, a few pieces with scores.
TokenizerMetadata spm_metadata(const std::vector<std::pair<std::string, TokenType>>& extra) {
  TokenizerMetadata metadata;
  metadata.source = "synthetic-spm";
  metadata.model = "llama";
  std::vector<int64_t> types;
  std::vector<float> scores;
  auto add = [&](const std::string& text, TokenType type, float score) {
    metadata.tokens.push_back(text);
    types.push_back(static_cast<int64_t>(type));
    scores.push_back(score);
  };
  add("<unk>", TokenType::Unknown, 0);
  add("<s>", TokenType::Control, 0);
  add("</s>", TokenType::Control, 0);
  for (int byte = 0; byte < 256; ++byte) add(fmt::format("<0x{:02X}>", byte), TokenType::Byte, 0);
  add("\xE2\x96\x81", TokenType::Normal, -1);
  add("a", TokenType::Normal, -2);
  add("b", TokenType::Normal, -2);
  add("c", TokenType::Normal, -2);
  add("d", TokenType::Normal, -2);
  for (const auto& [text, type] : extra) add(text, type, -5);
  metadata.token_types = types;
  metadata.scores = scores;
  return metadata;
}

std::vector<std::string> words_of(const PreTokenizer& pre, std::string_view text) {
  const std::vector<uint32_t> codepoints = unicode::decode_utf8(text);
  std::vector<std::string> words;
  for (const WordSpan& span : pre.split(codepoints)) {
    std::string word;
    for (uint32_t i = span.begin; i < span.end; ++i) unicode::append_utf8(word, codepoints[i]);
    words.push_back(word);
  }
  return words;
}

}  // namespace

TEST_CASE("Unicode classes come from the Unicode tables, not ASCII rules") {
  using unicode::Category;
  CHECK(unicode::flags_of('A').category() == Category::Letter);
  CHECK(unicode::flags_of(0x00E9).category() == Category::Letter);    // é
  CHECK(unicode::flags_of(0x4E2D).category() == Category::Letter);    // 中 (CJK range from a First/Last pair)
  CHECK(unicode::flags_of(0xAC00).category() == Category::Letter);    // 가 (Hangul range)
  CHECK(unicode::flags_of(0x0663).category() == Category::Number);    // ٣ ARABIC-INDIC DIGIT THREE
  CHECK(unicode::flags_of(0x216B).category() == Category::Number);    // Ⅻ (Nl)
  CHECK(unicode::flags_of(0x0301).category() == Category::Mark);      // combining acute
  CHECK(unicode::flags_of('~').category() == Category::Symbol);
  CHECK(unicode::flags_of(0x1F600).category() == Category::Symbol);   // 😀
  CHECK(unicode::flags_of(0x3002).category() == Category::Punctuation);  // 。
  CHECK(unicode::flags_of(0xE000).category() == Category::Control);   // private use (Co)
  CHECK(unicode::flags_of(0x0378).category() == Category::Undefined); // unassigned
  CHECK(unicode::flags_of(0x110000).category() == Category::Undefined);
  for (uint32_t space : {0x09u, 0x0Au, 0x0Bu, 0x0Cu, 0x0Du, 0x20u, 0x85u, 0xA0u, 0x1680u, 0x2000u, 0x200Au, 0x2028u,
                         0x2029u, 0x202Fu, 0x205Fu, 0x3000u}) {
    CHECK_MESSAGE(unicode::flags_of(space).is_whitespace(), "U+", fmt::format("{:04X}", space));
  }
  CHECK_FALSE(unicode::flags_of(0x200B).is_whitespace());  // ZERO WIDTH SPACE is not White_Space
  CHECK_FALSE(unicode::flags_of('x').is_whitespace());
}

TEST_CASE("UTF-8 decoding follows llama.cpp: a malformed byte becomes U+FFFD and consumes one byte") {
  CHECK(unicode::decode_utf8("a\xC3\xA9") == std::vector<uint32_t>{'a', 0xE9});
  CHECK(unicode::decode_utf8("\xFF" "a") == std::vector<uint32_t>{0xFFFD, 'a'});
  CHECK(unicode::decode_utf8("\xE2\x96") == std::vector<uint32_t>{0xFFFD, 0xFFFD});  // truncated
  CHECK(unicode::decode_utf8("\xF0\x9F\x98\x80") == std::vector<uint32_t>{0x1F600});
}

TEST_CASE("every supported pre-tokenizer compiles, covers its input and round trips through a byte-level vocab") {
  const auto names = supported_pre_tokenizer_names();
  for (const char* required : {"default", "llama-bpe", "qwen2", "smollm", "deepseek-llm", "deepseek-coder", "mpt",
                               "gpt-neox", "refact", "olmo", "poro", "command-r", "gpt-2", "starcoder", "falcon",
                               "tekken", "chameleon", "deepseek-v3", "viking", "poro-chat"}) {
    CHECK_MESSAGE(std::find(names.begin(), names.end(), required) != names.end(), required, " is not supported");
  }
  const std::string text = mixed_text();
  const std::vector<uint32_t> codepoints = unicode::decode_utf8(text);
  for (std::string_view name : names) {
    CAPTURE(name);
    const PreTokenizerSpec* spec = find_pre_tokenizer(name);
    REQUIRE(spec != nullptr);
    const PreTokenizer pre(*spec);
    // The words tile the text exactly: nothing dropped, nothing repeated, no empty word.
    const std::vector<WordSpan> words = pre.split(codepoints);
    uint32_t position = 0;
    bool tiles = true;
    for (const WordSpan& word : words) {
      tiles = tiles && word.begin == position && word.end > word.begin;
      position = word.end;
    }
    CHECK(tiles);
    CHECK(position == codepoints.size());
    // Encoding with a byte-only vocabulary under this pre-tokenizer gives back the bytes.
    const auto built = build(bpe_writer(std::string(name)));
    const auto ids = built.tokenizer->encode(text, false, false);
    CHECK(concatenated_pieces(*built.tokenizer, ids) == text);
  }
  CHECK(find_pre_tokenizer("no-such-pre") == nullptr);
}

TEST_CASE("pre-tokenizer splits follow their regexes") {
  using Words = std::vector<std::string>;
  const PreTokenizer gpt2(*find_pre_tokenizer("gpt-2"));
  // ' ?\p{L}+', ' ?\p{N}+', contractions, '\s+(?!\S)' leaves one space for the next word.
  CHECK(words_of(gpt2, "Hello world's 123   x") == Words{"Hello", " world", "'s", " 123", "  ", " x"});
  CHECK(words_of(gpt2, "caf\xC3\xA9 \xD9\xA3\xD9\xA4") == Words{"caf\xC3\xA9", " \xD9\xA3\xD9\xA4"});

  const PreTokenizer llama3(*find_pre_tokenizer("llama-bpe"));
  // \p{N}{1,3}: digit runs in chunks of three; case-insensitive contractions; CR/LF end a whitespace piece.
  CHECK(words_of(llama3, "1234567") == Words{"123", "456", "7"});
  CHECK(words_of(llama3, "I'M HERE") == Words{"I", "'M", " HERE"});
  CHECK(words_of(llama3, "a  \n\n b") == Words{"a", "  \n\n", " b"});
  CHECK(words_of(llama3, "x!!\n\ny") == Words{"x", "!!\n\n", "y"});

  const PreTokenizer qwen2(*find_pre_tokenizer("qwen2"));
  CHECK(words_of(qwen2, "1234") == Words{"1", "2", "3", "4"});

  const PreTokenizer starcoder(*find_pre_tokenizer("smollm"));
  CHECK(words_of(starcoder, "x=42") == Words{"x", "=", "4", "2"});

  const PreTokenizer poro(*find_pre_tokenizer("poro-chat"));
  CHECK(words_of(poro, "Hei maailma, moi!") == Words{"Hei", " maailma", ",", " moi", "!"});
}

TEST_CASE("the hand-written GPT-2 and LLAMA3 splitters agree with PCRE2 running the same regexes") {
  // Random strings over an alphabet chosen for the corner cases: spaces of every kind, CR/LF, apostrophes,
  // letters, digits and marks of several scripts, symbols, undefined and private-use code points.
  const std::vector<uint32_t> alphabet = {'a', 'Z', 's', 't', 'l', 'e', 'R', 'E', '1', '9', ' ', ' ', ' ', '\n',
                                          '\r', '\t', '\'', '!', '~', '.', 0xE9, 0x4E2D, 0xFF11, 0x0663, 0x216B,
                                          0xA0, 0x3000, 0x85, 0x2028, 0x0301, 0x1F600, 0x0378, 0xE000, 0x200B};
  const auto* gpt2_spec = find_pre_tokenizer("gpt-2");
  const auto* llama3_spec = find_pre_tokenizer("llama-bpe");
  const std::pair<std::unique_ptr<WordSplitter>, std::unique_ptr<WordSplitter>> pairs[] = {
      {make_gpt2_splitter(), make_regex_splitter(gpt2_spec->regexes[0])},
      {make_llama3_splitter(), make_regex_splitter(llama3_spec->regexes[0])},
  };
  std::mt19937 random(1234);
  for (int trial = 0; trial < 3000; ++trial) {
    std::vector<uint32_t> codepoints(1 + random() % 24);
    for (uint32_t& cp : codepoints) cp = alphabet[random() % alphabet.size()];
    const std::vector<WordSpan> whole = {{0, static_cast<uint32_t>(codepoints.size())}};
    for (size_t which = 0; which < 2; ++which) {
      SplitInput input(codepoints);
      std::vector<WordSpan> handwritten, regex;
      pairs[which].first->split(input, whole, handwritten);
      pairs[which].second->split(input, whole, regex);
      std::string boundaries_a, boundaries_b;
      for (const auto& w : handwritten) boundaries_a += fmt::format("{} ", w.end);
      for (const auto& w : regex) boundaries_b += fmt::format("{} ", w.end);
      REQUIRE_MESSAGE(boundaries_a == boundaries_b, (which == 0 ? "gpt2" : "llama3"), " splitters differ on [",
                      fmt::format("{:x}", fmt::join(codepoints, " ")), "]");
    }
  }
}

TEST_CASE("decode(encode(x)) == x for the BPE vocabularies") {
  for (const std::string name : {"gpt-2", "starcoder", "deepseek-coder", "falcon"}) {
    CAPTURE(name);
    const auto loaded = load_vocab(name);
    const Tokenizer& tokenizer = *loaded.tokenizer;
    std::vector<std::string> texts = kSamples;
    texts.push_back(mixed_text());
    for (const std::string& text : texts) {
      CAPTURE(text);
      const auto ids = tokenizer.encode(text, false, false);
      // The pieces always give back the bytes; decode() also applies clean_spaces where the vocabulary asks.
      CHECK(concatenated_pieces(tokenizer, ids) == text);
      const bool has_cleanable = text.find(" .") != std::string::npos || text.find(" ,") != std::string::npos ||
                                 text.find(" !") != std::string::npos || text.find(" ?") != std::string::npos ||
                                 text.find(" '") != std::string::npos;
      if (!tokenizer.clean_spaces() || !has_cleanable) CHECK(tokenizer.decode(ids) == text);
    }
  }
}

TEST_CASE("a byte without a token in a byte-level vocabulary is dropped, as llama.cpp drops it") {
  // Falcon's vocabulary has no token for 0x0B (it would be spelled U+010B).
  const auto falcon = load_vocab("falcon");
  REQUIRE_FALSE(falcon.tokenizer->find_token("\xC4\x8B").has_value());
  CHECK(falcon.tokenizer->decode(falcon.tokenizer->encode("a\vb", false, false)) == "ab");
  const auto gpt2 = load_vocab("gpt-2");
  CHECK(gpt2.tokenizer->decode(gpt2.tokenizer->encode("a\vb", false, false)) == "a\vb");
}

TEST_CASE("BPE decode cleans spaces as llama.cpp's clean_spaces does, only where the pre-tokenizer asks") {
  const auto gpt2 = load_vocab("gpt-2");
  REQUIRE(gpt2.tokenizer->clean_spaces());
  const std::string text = "Hi , you ! Really ? Yes . it 's I 'm we 're they 've don 't he 'd we 'll a ' b";
  CHECK(gpt2.tokenizer->decode(gpt2.tokenizer->encode(text, false, false)) ==
        "Hi, you! Really? Yes. it's I'm we're they've don 't he 'd we 'll a'b");
  const auto coder = load_vocab("deepseek-coder");
  REQUIRE_FALSE(coder.tokenizer->clean_spaces());
  CHECK(coder.tokenizer->decode(coder.tokenizer->encode(text, false, false)) == text);
}

TEST_CASE("BPE replaces malformed UTF-8 with U+FFFD before byte-level encoding (as llama.cpp does)") {
  const auto gpt2 = load_vocab("gpt-2");
  const auto ids = gpt2.tokenizer->encode("a\xFF" "b", false, false);
  CHECK(gpt2.tokenizer->decode(ids) == "a\xEF\xBF\xBD" "b");
}

TEST_CASE("SPM round trips, modulo the leading space after BOS") {
  const auto loaded = load_vocab("llama-spm");
  const Tokenizer& tokenizer = *loaded.tokenizer;
  REQUIRE(tokenizer.add_space_prefix());
  REQUIRE(tokenizer.add_bos());
  std::vector<std::string> texts = kSamples;
  texts.push_back(mixed_text());
  // Malformed UTF-8 goes through byte fallback byte for byte. (A malformed lead byte is taken with the bytes its
  // value announces, so one placed right before a space would swallow part of the "▁" and the space would come
  // back as raw "▁" bytes, as in llama.cpp; this text avoids that.)
  texts.push_back("bytes:\xFF\xFExyz malformed:\xE2\x96xy and a lone \x80x");
  for (const std::string& text : texts) {
    CAPTURE(text);
    const auto ids = tokenizer.encode(text, false, false);
    // The encoder adds one leading "▁"; decode strips one leading space of the first piece.
    CHECK(tokenizer.decode(ids) == text);
    // With BOS first, the first text piece is no longer the first piece: its space stays.
    const auto with_bos = tokenizer.encode(text, true, false);
    if (!text.empty()) {
      REQUIRE(with_bos.size() == ids.size() + 1);
      CHECK(with_bos.front() == tokenizer.bos_id());
      CHECK(tokenizer.decode(with_bos) == " " + text);
    } else {
      CHECK(with_bos == std::vector<int32_t>{tokenizer.bos_id()});
      CHECK(ids.empty());
    }
  }
}

TEST_CASE("the streaming detokenizer emits only whole UTF-8 characters and flushes the rest") {
  const auto loaded = load_vocab("llama-spm");
  const Tokenizer& tokenizer = *loaded.tokenizer;
  // SPM byte fallback spells characters outside the vocabulary (emoji, rare CJK) as single-byte tokens, so the
  // stream has pieces that end inside a character.
  const std::string text = "Emoji 😀🎉 and 𝄞 and 鬱 " + mixed_text();
  const auto ids = tokenizer.encode(text, true, false);
  StreamingDetokenizer stream(tokenizer);
  std::string streamed;
  size_t partial_pieces = 0;
  for (int32_t id : ids) {
    const std::string piece = tokenizer.token_to_piece(id);
    if (!is_valid_utf8(piece)) ++partial_pieces;
    const std::string chunk = stream.push(id);
    CHECK_MESSAGE(is_valid_utf8(chunk), "chunk after token ", id, " is not whole UTF-8");
    streamed += chunk;
  }
  CHECK(partial_pieces > 0);  // the test really exercised split characters
  streamed += stream.flush();
  // Never strips: after BOS the first word keeps its space.
  CHECK(streamed == " " + text);

  // A stream that ends inside a character gives the incomplete bytes at flush.
  StreamingDetokenizer truncated(tokenizer);
  const int32_t byte_e2 = *tokenizer.find_token("<0xE2>");
  const int32_t byte_96 = *tokenizer.find_token("<0x96>");
  CHECK(truncated.push(*tokenizer.find_token("▁a")) == " a");
  CHECK(truncated.push(byte_e2).empty());
  CHECK(truncated.push(byte_96).empty());
  CHECK(truncated.flush() == "\xE2\x96");
  CHECK(truncated.flush().empty());
}

TEST_CASE("special tokens: single ids with parse_special, plain text without") {
  SUBCASE("gpt-2 <|endoftext|>") {
    const auto loaded = load_vocab("gpt-2");
    const Tokenizer& tokenizer = *loaded.tokenizer;
    const int32_t end_of_text = *tokenizer.find_token("<|endoftext|>");
    CHECK(tokenizer.token_type(end_of_text) == TokenType::Control);
    CHECK(tokenizer.is_end_of_generation(end_of_text));
    const std::string text = "one<|endoftext|>two";
    const auto parsed = tokenizer.encode(text, false, true);
    CHECK(std::count(parsed.begin(), parsed.end(), end_of_text) == 1);
    CHECK(tokenizer.decode(parsed, /*render_special=*/true) == text);
    CHECK(tokenizer.decode(parsed) == "onetwo");
    const auto plain = tokenizer.encode(text, false, false);
    CHECK(std::count(plain.begin(), plain.end(), end_of_text) == 0);
    CHECK(tokenizer.decode(plain) == text);
  }
  SUBCASE("SPM control tokens get the leading space after them") {
    const auto loaded = load_vocab("llama-spm");
    const Tokenizer& tokenizer = *loaded.tokenizer;
    const auto ids = tokenizer.encode("<s>Hello</s>world", false, true);
    REQUIRE(ids.size() >= 4);
    CHECK(ids.front() == tokenizer.bos_id());
    CHECK(std::count(ids.begin(), ids.end(), tokenizer.eos_id()) == 1);
    // Each raw fragment after a special token is encoded as if it began the text ("▁Hello", "▁world").
    const auto hello = tokenizer.encode("Hello", false, false);
    CHECK(std::vector<int32_t>(ids.begin() + 1, ids.begin() + 1 + hello.size()) == hello);
    CHECK(tokenizer.decode(ids, true) == "<s> Hello</s> world");
  }
  SUBCASE("longer candidates claim text first; USER_DEFINED tokens split even without parse_special") {
    // No pair of single characters concatenates to "#ab" or "abcd", so SPM merges cannot form these tokens
    // from plain text; "dd" can, but it is cut out before merging anyway.
    TokenizerMetadata metadata = spm_metadata({{"#ab", TokenType::Control},
                                               {"abcd", TokenType::Control},
                                               {"dd", TokenType::UserDefined}});
    const auto tokenizer = Tokenizer::from_metadata(metadata);
    const int32_t hash_ab = *tokenizer->find_token("#ab");
    const int32_t abcd = *tokenizer->find_token("abcd");
    const int32_t dd = *tokenizer->find_token("dd");
    // "abcd" is longer than "#ab", so it claims "#abcd"[1..5) although "#ab" starts earlier.
    const auto ids = tokenizer->encode("#abcd", false, true);
    CHECK(ids.back() == abcd);
    CHECK(std::count(ids.begin(), ids.end(), abcd) == 1);
    CHECK(std::count(ids.begin(), ids.end(), hash_ab) == 0);
    CHECK(tokenizer->decode(ids, true) == "#abcd");
    // Without parse_special the control tokens are text; the user-defined one is still cut out.
    const auto plain = tokenizer->encode("#abcdd", false, false);
    CHECK(std::count(plain.begin(), plain.end(), abcd) == 0);
    CHECK(std::count(plain.begin(), plain.end(), hash_ab) == 0);
    CHECK(plain.back() == dd);
    CHECK(tokenizer->decode(plain) == "#abcdd");
  }
}

TEST_CASE("SmolLM2-135M-Instruct: ChatML markers, round trips") {
  if (!have_smollm()) return;
  const auto loaded = load(kSmolLmPath);
  const Tokenizer& tokenizer = *loaded.tokenizer;
  CHECK(tokenizer.model_name() == "gpt2");
  CHECK(tokenizer.pre_tokenizer_name() == "smollm");
  CHECK_FALSE(tokenizer.clean_spaces());
  CHECK_FALSE(tokenizer.chat_template().empty());
  const int32_t im_start = *tokenizer.find_token("<|im_start|>");
  const int32_t im_end = *tokenizer.find_token("<|im_end|>");
  CHECK(tokenizer.is_end_of_generation(im_end));

  const std::string chat = "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n";
  const auto parsed = tokenizer.encode(chat, false, true);
  CHECK(std::count(parsed.begin(), parsed.end(), im_start) == 2);
  CHECK(std::count(parsed.begin(), parsed.end(), im_end) == 1);
  CHECK(parsed.front() == im_start);
  CHECK(tokenizer.decode(parsed, true) == chat);
  const auto plain = tokenizer.encode(chat, false, false);
  CHECK(std::count(plain.begin(), plain.end(), im_start) == 0);
  CHECK(plain.size() > parsed.size());
  CHECK(tokenizer.decode(plain) == chat);

  std::vector<std::string> texts = kSamples;
  texts.push_back(mixed_text());
  // The llama.cpp test strings too.
  {
    std::ifstream in(kVectorDir + "ggml-vocab-gpt-2.gguf.inp", std::ios::binary);
    const std::string inputs((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const std::string separator = "\n__ggml_vocab_test__\n";
    for (size_t begin = 0, end; (end = inputs.find(separator, begin)) != std::string::npos;
         begin = end + separator.size()) {
      texts.push_back(inputs.substr(begin, end - begin));
    }
    CHECK(texts.size() == kSamples.size() + 1 + 46);
  }
  for (const std::string& text : texts) {
    CAPTURE(text);
    CHECK(tokenizer.decode(tokenizer.encode(text, true, false)) == text);
  }
  const std::string big = mixed_text();
  CHECK(big.size() > 4000);
}

TEST_CASE("bad tokenizer metadata is a clear error") {
  CHECK(build_error(bpe_writer()).empty());  // the base file is good

  SUBCASE("gpt2 without merges") {
    GgufWriter writer = bpe_writer();
    writer.remove("tokenizer.ggml.merges");
    const std::string error = build_error(writer);
    CHECK(error.find("tokenizer.ggml.merges is missing") != std::string::npos);
    CHECK(error.find("test.gguf") != std::string::npos);
  }
  SUBCASE("token type out of range") {
    GgufWriter writer = bpe_writer();
    std::vector<int32_t> types(260, 1);
    types[257] = 9;
    writer.set("tokenizer.ggml.token_type", gguf_value::i32_array(types));
    const std::string error = build_error(writer);
    CHECK(error.find("tokenizer.ggml.token_type[257] = 9") != std::string::npos);
  }
  SUBCASE("unknown pre-tokenizer lists the supported names") {
    const std::string error = build_error(bpe_writer("gpt-5o"));
    CHECK(error.find("unknown pre-tokenizer 'gpt-5o'") != std::string::npos);
    for (std::string_view name : supported_pre_tokenizer_names()) {
      CHECK_MESSAGE(error.find(std::string(name)) != std::string::npos, name);
    }
  }
  SUBCASE("scores / token_type lengths differ from tokens") {
    GgufWriter writer = bpe_writer();
    writer.set("tokenizer.ggml.scores", gguf_value::f32_array(std::vector<float>(100, 0.0f)));
    CHECK(build_error(writer).find("tokenizer.ggml.scores has 100 entries but tokenizer.ggml.tokens has 260") !=
          std::string::npos);
    GgufWriter types_writer = bpe_writer();
    types_writer.set("tokenizer.ggml.token_type", gguf_value::i32_array(std::vector<int32_t>(300, 1)));
    CHECK(build_error(types_writer)
              .find("tokenizer.ggml.token_type has 300 entries but tokenizer.ggml.tokens has 260") !=
          std::string::npos);
  }
  SUBCASE("missing or unsupported model, missing or duplicate tokens") {
    GgufWriter no_model = bpe_writer();
    no_model.remove("tokenizer.ggml.model");
    CHECK(build_error(no_model).find("tokenizer.ggml.model is missing") != std::string::npos);
    GgufWriter bert = bpe_writer();
    bert.set_string("tokenizer.ggml.model", "bert");
    CHECK(build_error(bert).find("tokenizer.ggml.model 'bert' is not supported") != std::string::npos);
    GgufWriter no_tokens = bpe_writer();
    no_tokens.remove("tokenizer.ggml.tokens");
    CHECK(build_error(no_tokens).find("tokenizer.ggml.tokens is missing") != std::string::npos);
    GgufWriter duplicate = bpe_writer();
    duplicate.set("tokenizer.ggml.tokens", gguf_value::string_array({"a", "b", "a"}));
    duplicate.remove("tokenizer.ggml.token_type");
    CHECK(build_error(duplicate).find("tokens 0 and 2 have the same text 'a'") != std::string::npos);
  }
  SUBCASE("wrongly typed arrays") {
    GgufWriter writer = bpe_writer();
    writer.set("tokenizer.ggml.scores", gguf_value::string_array({"x"}));
    CHECK_FALSE(build_error(writer).empty());
  }
  SUBCASE("ids outside the vocabulary") {
    const auto built = build(bpe_writer());
    CHECK(error_of([&] { built.tokenizer->token_to_piece(260); }).find("token id 260 is out of range") !=
          std::string::npos);
    CHECK_FALSE(error_of([&] { built.tokenizer->decode(std::vector<int32_t>{1, -1}); }).empty());
    CHECK_FALSE(built.tokenizer->is_end_of_generation(-5));
  }
}

namespace {

// Collects the warnings given while it lives (instead of printing them).
class WarningCollector {
 public:
  WarningCollector() : previous_(set_warning_handler([this](const std::string& m) { messages.push_back(m); })) {}
  ~WarningCollector() { set_warning_handler(previous_); }
  WarningCollector(const WarningCollector&) = delete;
  WarningCollector& operator=(const WarningCollector&) = delete;

  std::vector<std::string> messages;

 private:
  WarningHandler previous_;
};

bool has_part(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("special ids outside the vocabulary and odd merges are warned about, naming the key and the value") {
  SUBCASE("a special id outside the vocabulary keeps the default, as llama.cpp does, with a warning") {
    const auto reference = build(bpe_writer());
    GgufWriter writer = bpe_writer();
    writer.set_u32("tokenizer.ggml.bos_token_id", 99999);
    writer.set("tokenizer.ggml.eos_token_id", gguf_value::i32(-7));
    writer.set_u32("tokenizer.ggml.padding_token_id", 260);
    WarningCollector warnings;
    const auto built = build(writer);
    CHECK(built.tokenizer->bos_id() == reference.tokenizer->bos_id());  // the file names no valid BOS either
    CHECK(built.tokenizer->eos_id() == 11);  // llama.cpp's default EOS for a 'gpt2' tokenizer
    REQUIRE(warnings.messages.size() == 3);
    CHECK_MESSAGE(has_part(warnings.messages[0], "test.gguf: tokenizer.ggml.bos_token_id is 99999, which is not a "
                                                 "token id (the vocabulary has 260 tokens)"),
                  warnings.messages[0]);
    CHECK_MESSAGE(has_part(warnings.messages[1], "tokenizer.ggml.eos_token_id is -7"), warnings.messages[1]);
    CHECK_MESSAGE(has_part(warnings.messages[1], "using the default 11"), warnings.messages[1]);
    CHECK_MESSAGE(has_part(warnings.messages[2], "tokenizer.ggml.padding_token_id is 260"), warnings.messages[2]);
  }
  SUBCASE("-1, also as an unsigned 32-bit value, means no such token: no warning") {
    GgufWriter writer = bpe_writer();
    writer.set_u32("tokenizer.ggml.padding_token_id", 0xFFFFFFFFu);
    writer.set("tokenizer.ggml.seperator_token_id", gguf_value::i32(-1));
    WarningCollector warnings;
    build(writer);
    CHECK(warnings.messages.empty());
  }
  SUBCASE("malformed merges are ignored with one warning that counts them and quotes the first") {
    GgufWriter writer = bpe_writer();
    writer.set("tokenizer.ggml.merges", gguf_value::string_array({"h e", "nospace", "", "a b c", "l ", "l l",
                                                                  "he ll"}));
    WarningCollector warnings;
    const auto built = build(writer);
    REQUIRE(warnings.messages.size() == 1);
    CHECK_MESSAGE(has_part(warnings.messages[0], "test.gguf: tokenizer.ggml.merges has 4 malformed entries (not two "
                                                 "tokens separated by one space), ignored; the first is entry 1: "
                                                 "'nospace'"),
                  warnings.messages[0]);
    const int32_t hell = *built.tokenizer->find_token("hell");
    const int32_t o = *built.tokenizer->find_token("o");
    CHECK(built.tokenizer->encode("hello", false, false) == std::vector<int32_t>{hell, o});  // the rest still apply
  }
  SUBCASE("merges naming text that is no token are kept (llama.cpp merges by text) and warned about") {
    GgufWriter writer = bpe_writer();
    writer.set("tokenizer.ggml.merges", gguf_value::string_array({"h e", "q zz", "l l", "he ll"}));
    WarningCollector warnings;
    build(writer);
    REQUIRE(warnings.messages.size() == 1);
    CHECK_MESSAGE(has_part(warnings.messages[0], "tokenizer.ggml.merges has 1 entry naming text that is not a "
                                                 "token; the first is entry 1: 'q zz'"),
                  warnings.messages[0]);
  }
  SUBCASE("every real vocabulary and both models load without a warning") {
    REQUIRE_MESSAGE(std::filesystem::exists(kSmolLmPath), kSmolLmPath << " is missing (run scripts/setup.sh)");
    std::vector<std::string> paths = {kSmolLmPath, std::string(PAGEDLLM_SHARED_DIR) + "/models/stories260K.gguf"};
    for (const char* name : {"llama-spm", "gpt-2", "starcoder", "deepseek-coder", "falcon"}) {
      paths.push_back(kVectorDir + "ggml-vocab-" + name + ".gguf");
    }
    for (const std::string& path : paths) {
      CAPTURE(path);
      REQUIRE(std::filesystem::exists(path));
      WarningCollector warnings;
      load(path);
      CHECK(warnings.messages.empty());
    }
  }
}

TEST_CASE("pagedllm tokenize prints the tokenizer's warnings on stderr") {
  GgufWriter writer = bpe_writer();
  writer.set_u32("tokenizer.ggml.bos_token_id", 99999);
  const std::filesystem::path path =
      std::filesystem::temp_directory_path() / fmt::format("pagedllm_bad_bos_{}.gguf", static_cast<long>(getpid()));
  writer.write_file(path.string());
  const std::filesystem::path err =
      std::filesystem::temp_directory_path() / fmt::format("pagedllm_bad_bos_{}.err", static_cast<long>(getpid()));
  const int status = std::system((std::string(PAGEDLLM_BINARY) + " tokenize -m '" + path.string() +
                                  "' -p hello --ids >/dev/null 2>'" + err.string() + "'")
                                     .c_str());
  CHECK(status == 0);
  std::ifstream in(err);
  const std::string stderr_text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK_MESSAGE(has_part(stderr_text, "warning: " + path.string() + ": tokenizer.ggml.bos_token_id is 99999"),
                stderr_text);
  std::filesystem::remove(path);
  std::filesystem::remove(err);
}

TEST_CASE("the synthetic BPE file merges by rank and emits BOS/EOS per its flags") {
  GgufWriter writer = bpe_writer();
  writer.set_bool("tokenizer.ggml.add_eos_token", true);
  const auto built = build(writer);
  const Tokenizer& tokenizer = *built.tokenizer;
  const int32_t hell = *tokenizer.find_token("hell");
  const int32_t o = *tokenizer.find_token("o");
  CHECK(tokenizer.encode("hello", false, false) == std::vector<int32_t>{hell, o});
  CHECK_FALSE(tokenizer.add_bos());  // gpt-2 pre: no BOS by default
  CHECK(tokenizer.encode("hello", true, false) == std::vector<int32_t>{hell, o, tokenizer.eos_id()});
}

TEST_CASE("the synthetic Qwen-style BPE vocabulary: learned merges, Qwen's specials, byte-exact round trips") {
  const SyntheticBpeVocab vocab = synthetic_bpe_vocab(800);
  REQUIRE(vocab.tokens.size() == 800);
  CHECK(vocab.merges.size() == 800 - 256 - 5);  // every merge learned a new token
  CHECK(synthetic_bpe_vocab(800).merges == vocab.merges);  // deterministic
  // Frequent English pieces are learned early, as in a trained vocabulary ("Ġ" is the byte-level space).
  const auto rank_of = [&](const std::string& token) {
    return std::find(vocab.tokens.begin(), vocab.tokens.end(), token) - vocab.tokens.begin();
  };
  CHECK(rank_of("\xC4\xA0the") < 300);
  CHECK(vocab.tokens[static_cast<size_t>(vocab.im_end_id)] == "<|im_end|>");
  CHECK(vocab.token_types[static_cast<size_t>(vocab.im_start_id)] == 3);
  CHECK(vocab.token_types.back() == 4);  // </think>: user-defined
  CHECK_THROWS_AS(synthetic_bpe_vocab(260), Error);

  // The qwen2 pre-tokenizer over this vocabulary loses no byte of any text, special tokens included.
  const std::vector<uint8_t> image = build_synthetic_gguf(synthetic_spec("qwen2-tiny"));
  const auto file = GgufFile::from_memory(image, "qwen2-tiny.gguf");
  const auto tokenizer = Tokenizer::from_gguf(*file);
  for (const std::string text : {std::string("The end of the story. 12345 caf\xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC\n\n  x"),
                                 std::string("<|im_start|>user\nHi<|im_end|>\n<think>\n</think>")}) {
    CAPTURE(text);
    CHECK(tokenizer->decode(tokenizer->encode(text, false, true), true) == text);
  }
  CHECK(tokenizer->encode("<|im_start|>", false, true) == std::vector<int32_t>{vocab.im_start_id});
  CHECK(tokenizer->is_end_of_generation(vocab.im_end_id));
}

TEST_CASE("a 1 MB single-line input is encoded without quadratic blow-up") {
  // Not a timing assertion: it would take minutes if the special-token split or the merge loop were quadratic.
  const auto gpt2 = load_vocab("gpt-2");
  const std::string long_word(1 << 20, 'a');
  const auto ids = gpt2.tokenizer->encode(long_word, false, true);
  CHECK(gpt2.tokenizer->decode(ids) == long_word);
  std::string line;
  while (line.size() < (1 << 20)) line += "word<|endoftext|>x ";
  const auto line_ids = gpt2.tokenizer->encode(line, false, true);
  CHECK(gpt2.tokenizer->decode(line_ids, true) == line);
  const auto spm = load_vocab("llama-spm");
  CHECK(spm.tokenizer->decode(spm.tokenizer->encode(long_word, false, false)) == long_word);
}

namespace {

// Runs a shell command; returns its stdout, and its exit status through `status`.
std::string run_command(const std::string& command, int& status) {
  std::string output;
  FILE* pipe = popen(command.c_str(), "r");
  REQUIRE(pipe != nullptr);
  char buffer[4096];
  size_t n;
  while ((n = fread(buffer, 1, sizeof(buffer), pipe)) > 0) output.append(buffer, n);
  status = pclose(pipe);
  return output;
}

}  // namespace

TEST_CASE("pagedllm tokenize prints the tokenizer's ids and pieces") {
  const std::string binary = PAGEDLLM_BINARY;
  pagedllm::test::require_file(binary, "build the pagedllm target");
  const std::string vocab = kVectorDir + "ggml-vocab-llama-spm.gguf";
  const auto loaded = load(vocab);
  const std::string text = "Hello\tworld \xF0\x9F\x98\x80";
  const std::filesystem::path text_file =
      std::filesystem::temp_directory_path() / fmt::format("pagedllm_tokenize_{}.txt", static_cast<long>(getpid()));
  {
    std::ofstream out(text_file, std::ios::binary);
    out << text;
  }
  const std::string command = binary + " tokenize -m '" + vocab + "' -f '" + text_file.string() + "'";
  int status = 0;
  const std::string list = run_command(command + " --ids", status);
  CHECK(status == 0);
  CHECK(list == fmt::format("[{}]\n", fmt::join(loaded.tokenizer->encode(text, true, false), ", ")));

  // One line per token: id, tab, the piece quoted with control bytes and partial characters escaped.
  const std::string lines = run_command(command + " --no-bos", status);
  CHECK(status == 0);
  std::string expected;
  for (int32_t id : loaded.tokenizer->encode(text, false, false)) {
    const std::string piece = loaded.tokenizer->token_to_piece(id, true);
    std::string escaped;
    for (unsigned char c : piece) {
      if (c == '\t') escaped += "\\t";
      else if (c >= 0x80 && !is_valid_utf8(piece)) escaped += fmt::format("\\x{:02x}", c);
      else escaped += static_cast<char>(c);
    }
    expected += fmt::format("{}\t'{}'\n", id, escaped);
  }
  CHECK(lines == expected);
  std::filesystem::remove(text_file);

  run_command(binary + " tokenize -m '" + vocab + "' 2>/dev/null", status);
  CHECK(status != 0);  // no text given
}
