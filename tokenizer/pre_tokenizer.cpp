#include "tokenizer/pre_tokenizer.h"

#include <array>
#include <string_view>

namespace pagedllm {
namespace {

// The regex lists, byte for byte as llama.cpp's src/llama-vocab.cpp writes them as C++ string literals
// (they are data, not code).
constexpr std::string_view kDefaultRegexes[] = {
    "[\\p{P}\\$\\+<=>\\^~\\|]+",
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)",
    "\\p{N}+",
    "[0-9][0-9][0-9]",
};
constexpr std::string_view kLlama3Regexes[] = {
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
};
constexpr std::string_view kDeepseekLlmRegexes[] = {
    "[\r\n]",
    "\\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-ώᾀ-ᾴᾶ-ᾼιῂ-ῄῆ-ῌῐ-ΐῖ-Ίῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤΩℨK-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+",
    "\\s?[!-/:-~！-／：-～‘-‟　-。]+",
    "\\s+$",
    "[一-龥ࠀ-一가-퟿]+",
    "\\p{N}+",
};
constexpr std::string_view kDeepseek3Regexes[] = {
    "\\p{N}{1,3}",
    "[一-龥぀-ゟ゠-ヿ]+",
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+",
};
constexpr std::string_view kDeepseekCoderRegexes[] = {
    "[\r\n]",
    "\\s?\\p{L}+",
    "\\s?\\p{P}+",
    "[一-龥ࠀ-一가-퟿]+",
    "\\p{N}",
};
constexpr std::string_view kFalconRegexes[] = {
    "[\\p{P}\\$\\+<=>\\^~\\|`]+",
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)",
    "[0-9][0-9][0-9]",
};
constexpr std::string_view kStarcoderRegexes[] = {
    "\\p{N}",
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)",
};
constexpr std::string_view kGpt2Regexes[] = {
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)",
};
constexpr std::string_view kQwen2Regexes[] = {
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
};
constexpr std::string_view kPoroRegexes[] = {
    " ?[^(\\s|.,!?…。，、।۔،)]+",
};
constexpr std::string_view kVikingRegexes[] = {
    " ?[^(\\s|.,!?…。，、।۔،)]+",
    "\\p{N}",
};
constexpr std::string_view kTekkenRegexes[] = {
    "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
};
constexpr std::string_view kChameleonRegexes[] = {
    "<sentinel:[0-9]+>",
    "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z",
    "([\\t\\n]|    |  )",
    "\\p{N}",
    "[\\p{P}!-/:-@\\[-`{-~]",
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)",
};

// The two regexes that have hand-written splitters (llama.cpp chooses them by exact string comparison).
constexpr std::string_view kGpt2Regex = kGpt2Regexes[0];
constexpr std::string_view kLlama3Regex = kLlama3Regexes[0];

struct NamedSpec {
  std::string_view name;
  PreTokenizerSpec spec;
};

constexpr PreTokenizerSpec make_spec(std::string_view list_name, std::span<const std::string_view> regexes,
                                     bool clean_spaces = true, bool ignore_merges = false, bool add_bos = false,
                                     bool has_bos = true) {
  return PreTokenizerSpec{list_name, regexes, clean_spaces, ignore_merges, add_bos, has_bos};
}

// Name -> list and flags, in the order llama.cpp checks them. Two names that the project's issue asks for
// but llama.cpp (c392e50) does not know are accepted as aliases: "gpt-neox" (GPT-NeoX's tokenizer uses the GPT-2
// byte-level regex) and "poro" (same as "poro-chat").
const NamedSpec kSpecs[] = {
    {"default", make_spec("DEFAULT", kDefaultRegexes)},
    {"llama3", make_spec("LLAMA3", kLlama3Regexes, true, true, true)},
    {"llama-v3", make_spec("LLAMA3", kLlama3Regexes, true, true, true)},
    {"llama-bpe", make_spec("LLAMA3", kLlama3Regexes, true, true, true)},
    {"falcon3", make_spec("LLAMA3", kLlama3Regexes, true, true, true)},
    {"dbrx", make_spec("LLAMA3", kLlama3Regexes)},
    {"smaug-bpe", make_spec("LLAMA3", kLlama3Regexes)},
    {"chatglm-bpe", make_spec("LLAMA3", kLlama3Regexes, true, false, false, false)},
    {"deepseek-llm", make_spec("DEEPSEEK_LLM", kDeepseekLlmRegexes, false)},
    {"deepseek-coder", make_spec("DEEPSEEK_CODER", kDeepseekCoderRegexes, false)},
    {"deepseek-v3", make_spec("DEEPSEEK3", kDeepseek3Regexes, false)},
    {"falcon", make_spec("FALCON", kFalconRegexes)},
    {"mpt", make_spec("GPT2", kGpt2Regexes)},
    {"olmo", make_spec("GPT2", kGpt2Regexes)},
    {"jais", make_spec("GPT2", kGpt2Regexes)},
    {"gpt-2", make_spec("GPT2", kGpt2Regexes)},
    {"phi-2", make_spec("GPT2", kGpt2Regexes)},
    {"jina-es", make_spec("GPT2", kGpt2Regexes)},
    {"jina-de", make_spec("GPT2", kGpt2Regexes)},
    {"gigachat", make_spec("GPT2", kGpt2Regexes)},
    {"jina-v1-en", make_spec("GPT2", kGpt2Regexes)},
    {"jina-v2-es", make_spec("GPT2", kGpt2Regexes)},
    {"jina-v2-de", make_spec("GPT2", kGpt2Regexes)},
    {"jina-v2-code", make_spec("GPT2", kGpt2Regexes)},
    {"roberta-bpe", make_spec("GPT2", kGpt2Regexes)},
    {"gpt-neox", make_spec("GPT2", kGpt2Regexes)},
    {"starcoder", make_spec("STARCODER", kStarcoderRegexes)},
    {"refact", make_spec("STARCODER", kStarcoderRegexes)},
    {"exaone", make_spec("STARCODER", kStarcoderRegexes)},
    {"minerva-7b", make_spec("STARCODER", kStarcoderRegexes)},
    {"codeshell", make_spec("STARCODER", kStarcoderRegexes)},
    {"command-r", make_spec("STARCODER", kStarcoderRegexes, false)},
    {"smollm", make_spec("STARCODER", kStarcoderRegexes, false)},
    {"qwen2", make_spec("QWEN2", kQwen2Regexes, false)},
    {"deepseek-r1-qwen", make_spec("QWEN2", kQwen2Regexes, false)},
    {"megrez", make_spec("QWEN2", kQwen2Regexes)},
    {"stablelm2", make_spec("QWEN2", kQwen2Regexes)},
    {"poro-chat", make_spec("PORO", kPoroRegexes, false)},
    {"poro", make_spec("PORO", kPoroRegexes, false)},
    {"bloom", make_spec("PORO", kPoroRegexes)},
    {"gpt3-finnish", make_spec("PORO", kPoroRegexes)},
    {"viking", make_spec("VIKING", kVikingRegexes, false)},
    {"tekken", make_spec("TEKKEN", kTekkenRegexes, false, true, true)},
    {"chameleon", make_spec("CHAMELEON", kChameleonRegexes, false, false, true)},
};

std::unique_ptr<WordSplitter> make_step(std::string_view regex) {
  if (regex == kGpt2Regex) return make_gpt2_splitter();
  if (regex == kLlama3Regex) return make_llama3_splitter();
  return make_regex_splitter(regex);
}

}  // namespace

const PreTokenizerSpec* find_pre_tokenizer(std::string_view name) {
  for (const NamedSpec& entry : kSpecs) {
    if (entry.name == name) return &entry.spec;
  }
  return nullptr;
}

std::vector<std::string_view> supported_pre_tokenizer_names() {
  std::vector<std::string_view> names;
  for (const NamedSpec& entry : kSpecs) names.push_back(entry.name);
  return names;
}

PreTokenizer::PreTokenizer(const PreTokenizerSpec& spec) : spec_(&spec) {
  for (std::string_view regex : spec.regexes) steps_.push_back(make_step(regex));
}

PreTokenizer::~PreTokenizer() = default;
PreTokenizer::PreTokenizer(PreTokenizer&&) noexcept = default;
PreTokenizer& PreTokenizer::operator=(PreTokenizer&&) noexcept = default;

std::vector<WordSpan> PreTokenizer::split(std::span<const uint32_t> codepoints) const {
  std::vector<WordSpan> words;
  if (codepoints.empty()) return words;
  words.push_back({0, static_cast<uint32_t>(codepoints.size())});
  SplitInput input(codepoints);
  std::vector<WordSpan> next;
  for (const auto& step : steps_) {
    next.clear();
    next.reserve(words.size() * 2);
    step->split(input, words, next);
    words.swap(next);
  }
  return words;
}

}  // namespace pagedllm
