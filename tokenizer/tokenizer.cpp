#include "tokenizer/tokenizer.h"

#include <climits>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "common/error.h"
#include "common/warning.h"
#include "model_loader/gguf.h"
#include "tokenizer/bpe.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/pre_tokenizer.h"
#include "tokenizer/special_tokens.h"
#include "tokenizer/spm.h"

namespace pagedllm {
namespace {

// Texts llama.cpp recognises when the file names no such token, found by their text. A token found this way is made
// CONTROL, which also decides whether it is split out of text without parse_special.
constexpr std::string_view kEndOfTurnTexts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<EOT>",
    "<\xEF\xBD\x9C" "end\xE2\x96\x81" "of\xE2\x96\x81" "sentence\xEF\xBD\x9C>",  // <｜end▁of▁sentence｜> (DeepSeek)
};
constexpr std::string_view kEndOfMessageTexts[] = {"<|eom_id|>"};
// "</s>" too: the Gemma 3 vocabulary has it as a user-defined token next to its HTML-like tags, and llama.cpp
// (checked with llama-cpp-python 0.3.36) makes it CONTROL and end-of-generation, so it is not cut out of plain text.
constexpr std::string_view kEndOfGenerationTexts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|eom_id|>", "<EOT>", "</s>",
};
constexpr std::string_view kFimPrefixTexts[] = {"<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>",
                                                "<\xEF\xBD\x9C" "fim\xE2\x96\x81" "begin\xEF\xBD\x9C>", "<PRE>",
                                                "\xE2\x96\x81<PRE>"};
constexpr std::string_view kFimSuffixTexts[] = {"<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>",
                                                "<\xEF\xBD\x9C" "fim\xE2\x96\x81" "hole\xEF\xBD\x9C>", "<SUF>",
                                                "\xE2\x96\x81<SUF>"};
constexpr std::string_view kFimMiddleTexts[] = {"<|fim_middle|>", "<fim-middle>", "<fim_middle>",
                                                "<\xEF\xBD\x9C" "fim\xE2\x96\x81" "end\xEF\xBD\x9C>", "<MID>",
                                                "\xE2\x96\x81<MID>"};
constexpr std::string_view kFimPadTexts[] = {"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>"};
constexpr std::string_view kFimRepoTexts[] = {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>"};
constexpr std::string_view kFimSeparatorTexts[] = {"<|file_sep|>", "<|file_separator|>", "<file_sep>"};

constexpr int64_t kMaxTokenType = static_cast<int64_t>(TokenType::Byte);

// The byte a SentencePiece byte token "<0xNN>" stands for (-1 when the text has no hex digits where expected).
int spm_byte_value(std::string_view text) {
  if (text.size() < 4) return -1;
  int value = 0;
  int digits = 0;
  for (size_t i = 3; i < text.size() && digits < 2; ++i, ++digits) {
    const char c = text[i];
    int digit;
    if (c >= '0' && c <= '9') digit = c - '0';
    else if (c >= 'A' && c <= 'F') digit = c - 'A' + 10;
    else if (c >= 'a' && c <= 'f') digit = c - 'a' + 10;
    else break;
    value = value * 16 + digit;
  }
  return digits == 0 ? -1 : value;
}

std::string replace_space_markers(std::string_view text) {
  static constexpr std::string_view kSpaceMarker = "\xE2\x96\x81";  // U+2581
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    if (text.compare(i, kSpaceMarker.size(), kSpaceMarker) == 0) {
      out += ' ';
      i += kSpaceMarker.size();
    } else {
      out += text[i++];
    }
  }
  return out;
}

// llama.cpp's clean_spaces post-pass, three in-place passes over the bytes. The passes read
// the buffer they compact, exactly like the original, so its corner cases (" ' ' ") come out the same.
void clean_up_spaces(std::string& text) {
  // " ?", " !", " .", " ,": drop the space.
  size_t n = text.size();
  size_t total = n ? 1 : 0;
  for (size_t i = 1; i < n; ++i) {
    const char x = text[i];
    if (text[i - 1] == ' ' && (x == '?' || x == '!' || x == '.' || x == ',')) --total;
    text[total++] = x;
  }
  text.resize(total);
  // " ' " -> "'".
  n = text.size();
  total = n ? 1 : 0;
  for (size_t i = 1; i < n; ++i) {
    const char x = text[i];
    if (x == '\'' && i + 1 < n && text[i - 1] == ' ' && text[i + 1] == ' ') {
      --total;           // the space before
      text[++i] = '\0';  // the space after is skipped (and reads as '\0' to the next character)
    }
    text[total++] = x;
  }
  text.resize(total);
  // " 's", " 'm", " 're", " 've": drop the space (not before 't, 'd, 'll).
  n = text.size();
  total = n ? 1 : 0;
  for (size_t i = 1; i < n; ++i) {
    const char x = text[i];
    if (text[i - 1] == ' ' && x == '\'' && i + 1 < n) {
      const char x1 = text[i + 1];
      if (x1 == 's' || x1 == 'm') {
        --total;
      } else if (x1 != 't' && x1 != 'd' && i + 2 < n) {
        const char x2 = text[i + 2];
        if ((x1 == 'r' && x2 == 'e') || (x1 == 'v' && x2 == 'e')) --total;
      }
    }
    text[total++] = x;
  }
  text.resize(total);
}

}  // namespace

Tokenizer::Tokenizer() = default;
Tokenizer::~Tokenizer() = default;

std::unique_ptr<Tokenizer> Tokenizer::from_gguf(const GgufFile& file) {
  return from_metadata(read_tokenizer_metadata(file));
}

std::unique_ptr<Tokenizer> Tokenizer::from_metadata(const TokenizerMetadata& metadata) {
  const std::string& source = metadata.source.empty() ? std::string("tokenizer") : metadata.source;
  std::unique_ptr<Tokenizer> tokenizer(new Tokenizer());
  Tokenizer& t = *tokenizer;

  // ---- model and pre-tokenizer
  const bool is_spm = metadata.model == "llama";
  const bool is_bpe = metadata.model == "gpt2";
  if (!is_spm && !is_bpe) {
    fail("{}: tokenizer.ggml.model '{}' is not supported (supported: 'llama' = SentencePiece, 'gpt2' = byte-level "
         "BPE)", source, metadata.model);
  }
  t.model_name_ = metadata.model;
  t.pre_name_ = metadata.pre && !metadata.pre->empty() ? *metadata.pre : "default";
  const PreTokenizerSpec* pre_spec = nullptr;
  if (is_bpe) {
    pre_spec = find_pre_tokenizer(t.pre_name_);
    if (pre_spec == nullptr) {
      fail("{}: unknown pre-tokenizer '{}' (tokenizer.ggml.pre); supported: {}", source, t.pre_name_,
           fmt::join(supported_pre_tokenizer_names(), ", "));
    }
    if (!metadata.merges) {
      fail("{}: tokenizer.ggml.merges is missing; a 'gpt2' (byte-level BPE) tokenizer needs its merge list", source);
    }
  }

  // ---- tokens, scores, types
  const size_t n_tokens = metadata.tokens.size();
  if (n_tokens == 0) fail("{}: tokenizer.ggml.tokens is empty", source);
  if (n_tokens > static_cast<size_t>(INT32_MAX)) fail("{}: tokenizer.ggml.tokens has too many entries", source);
  if (metadata.scores && metadata.scores->size() != n_tokens) {
    fail("{}: tokenizer.ggml.scores has {} entries but tokenizer.ggml.tokens has {}", source,
         metadata.scores->size(), n_tokens);
  }
  if (metadata.token_types && metadata.token_types->size() != n_tokens) {
    fail("{}: tokenizer.ggml.token_type has {} entries but tokenizer.ggml.tokens has {}", source,
         metadata.token_types->size(), n_tokens);
  }
  std::vector<std::string> texts(metadata.tokens);
  for (size_t id = 0; id < n_tokens; ++id) {
    if (texts[id].empty()) texts[id] = fmt::format("[EMPTY_{}]", id);  // as llama.cpp names empty tokens
  }
  std::vector<float> scores = metadata.scores ? *metadata.scores : std::vector<float>(n_tokens, 0.0f);
  std::vector<TokenType> types(n_tokens, TokenType::Normal);
  if (metadata.token_types) {
    for (size_t id = 0; id < n_tokens; ++id) {
      const int64_t value = (*metadata.token_types)[id];
      if (value < 0 || value > kMaxTokenType) {
        fail("{}: tokenizer.ggml.token_type[{}] = {} is not a token type (0 undefined, 1 normal, 2 unknown, "
             "3 control, 4 user-defined, 5 unused, 6 byte)", source, id, value);
      }
      types[id] = static_cast<TokenType>(value);
    }
  }
  t.vocab_ = Vocabulary(std::move(texts), std::move(scores), std::move(types));
  const auto n_vocab = static_cast<int64_t>(n_tokens);

  // ---- special ids and flags: model defaults, then the file's values where they name a token
  auto default_id = [&](int64_t id) { return id < n_vocab ? static_cast<int32_t>(id) : -1; };
  auto apply_id = [&](int32_t& id, const std::optional<TokenizerMetadata::StoredId>& stored) {
    if (!stored) return;
    if (stored->id >= 0 && stored->id < n_vocab) {
      id = static_cast<int32_t>(stored->id);
      return;
    }
    // -1 (also as an unsigned 32-bit value) is how converters write "no such token": nothing to warn about.
    if (stored->id == -1 || stored->id == int64_t{UINT32_MAX}) return;
    // llama.cpp keeps the default with a warning ("bad special token"); so does this tokenizer.
    warn(fmt::format("{}: {} is {}, which is not a token id (the vocabulary has {} tokens); using {}", source,
                     stored->key, stored->id, n_vocab, id >= 0 ? fmt::format("the default {}", id) : "none"));
  };
  if (is_spm) {
    t.bos_id_ = default_id(1);
    t.eos_id_ = default_id(2);
    t.add_space_prefix_ = true;
    t.clean_spaces_ = false;
    t.add_bos_ = true;
  } else {
    t.bos_id_ = pre_spec->has_bos ? default_id(11) : -1;
    t.eos_id_ = default_id(11);
    t.add_space_prefix_ = false;
    t.clean_spaces_ = pre_spec->clean_spaces;
    t.add_bos_ = pre_spec->add_bos;
  }
  apply_id(t.bos_id_, metadata.bos_id);
  apply_id(t.eos_id_, metadata.eos_id);
  apply_id(t.eot_id_, metadata.eot_id);
  int32_t eom_id = -1;
  int32_t fim_ids[6] = {-1, -1, -1, -1, -1, -1};  // prefix, suffix, middle, pad, repo, separator
  apply_id(eom_id, metadata.eom_id);
  apply_id(fim_ids[0], metadata.fim_prefix_id);
  apply_id(fim_ids[1], metadata.fim_suffix_id);
  apply_id(fim_ids[2], metadata.fim_middle_id);
  apply_id(fim_ids[3], metadata.fim_pad_id);
  apply_id(fim_ids[4], metadata.fim_repo_id);
  apply_id(fim_ids[5], metadata.fim_separator_id);
  // Read but not used by this tokenizer; checked all the same, as llama.cpp checks them.
  int32_t unknown_id = is_spm ? default_id(0) : -1;
  int32_t separator_id = -1;
  int32_t padding_id = -1;
  apply_id(unknown_id, metadata.unknown_id);
  apply_id(separator_id, metadata.separator_id);
  apply_id(padding_id, metadata.padding_id);
  if (metadata.add_space_prefix) t.add_space_prefix_ = *metadata.add_space_prefix;
  if (metadata.add_bos) t.add_bos_ = *metadata.add_bos;
  if (metadata.add_eos) t.add_eos_ = *metadata.add_eos;
  if (t.add_bos_ && t.bos_id_ < 0) {
    fail("{}: the tokenizer adds a BOS token (tokenizer.ggml.add_bos_token) but has no BOS id", source);
  }
  if (t.add_eos_ && t.eos_id_ < 0) {
    fail("{}: the tokenizer adds an EOS token (tokenizer.ggml.add_eos_token) but has no EOS id", source);
  }

  // ---- ids found by text (made CONTROL), and the end-of-generation set
  auto make_control = [&](int32_t id) {
    if (t.vocab_.type(id) != TokenType::Control) t.vocab_.set_type(id, TokenType::Control);
  };
  auto detect = [&](int32_t& id, std::span<const std::string_view> candidates) {
    if (id >= 0) return;
    for (std::string_view text : candidates) {
      const int32_t found = t.vocab_.find(text);
      if (found >= 0) {
        id = found;
        make_control(found);
        return;
      }
    }
  };
  detect(t.eot_id_, kEndOfTurnTexts);
  detect(eom_id, kEndOfMessageTexts);
  detect(fim_ids[0], kFimPrefixTexts);
  detect(fim_ids[1], kFimSuffixTexts);
  detect(fim_ids[2], kFimMiddleTexts);
  detect(fim_ids[3], kFimPadTexts);
  detect(fim_ids[4], kFimRepoTexts);
  detect(fim_ids[5], kFimSeparatorTexts);
  t.end_of_generation_.assign(n_tokens, 0);
  for (std::string_view text : kEndOfGenerationTexts) {
    const int32_t id = t.vocab_.find(text);
    if (id >= 0) {
      t.end_of_generation_[id] = 1;
      make_control(id);
    }
  }
  for (int32_t id : {t.eos_id_, t.eot_id_, eom_id, fim_ids[3], fim_ids[4], fim_ids[5]}) {
    if (id >= 0) t.end_of_generation_[id] = 1;
  }

  // ---- encoders, and every token's piece rendered once
  t.special_splitter_ = std::make_unique<SpecialTokenSplitter>(t.vocab_);
  if (is_spm) {
    t.spm_ = std::make_unique<SpmEncoder>(t.vocab_);
  } else {
    t.bpe_ = std::make_unique<BpeEncoder>(t.vocab_, *metadata.merges, *pre_spec);
    // Converters write every merge as two tokens and one space; llama.cpp accepts anything silently. Tokenizing
    // stays as llama.cpp's, and a file that is not what its converter wrote says so.
    const BpeMergeTable::Problems& problems = t.bpe_->merges().problems();
    auto quoted_entry = [&](size_t index) {
      const std::string& entry = (*metadata.merges)[index];
      return entry.size() <= 80 ? entry : entry.substr(0, 80) + "...";
    };
    if (problems.malformed > 0) {
      warn(fmt::format("{}: tokenizer.ggml.merges has {} malformed {} (not two tokens separated by one space), "
                       "ignored; the first is entry {}: '{}'",
                       source, problems.malformed, problems.malformed == 1 ? "entry" : "entries",
                       problems.first_malformed, quoted_entry(problems.first_malformed)));
    }
    if (problems.unknown_side > 0) {
      warn(fmt::format("{}: tokenizer.ggml.merges has {} {} naming text that is not a token; the first is entry "
                       "{}: '{}'",
                       source, problems.unknown_side, problems.unknown_side == 1 ? "entry" : "entries",
                       problems.first_unknown_side, quoted_entry(problems.first_unknown_side)));
    }
  }
  t.pieces_.resize(n_tokens);
  for (int32_t id = 0; id < static_cast<int32_t>(n_tokens); ++id) {
    const std::string& text = t.vocab_.text(id);
    switch (t.vocab_.type(id)) {
      case TokenType::Control:
      case TokenType::Unknown:
      case TokenType::UserDefined:
        t.pieces_[id] = text;
        break;
      case TokenType::Normal:
        t.pieces_[id] = is_spm ? replace_space_markers(text) : byte_level::decode_token_text(text);
        break;
      case TokenType::Byte:
        if (is_spm) {
          const int byte = spm_byte_value(text);
          if (byte >= 0) t.pieces_[id] = std::string(1, static_cast<char>(byte));
        }
        break;
      case TokenType::Unused:
      case TokenType::Undefined:
        break;
    }
  }
  t.chat_template_ = metadata.chat_template;
  return tokenizer;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special, bool parse_special) const {
  if (text.size() > UINT32_MAX) fail("cannot tokenize {} bytes of text at once (limit 4 GiB)", text.size());
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  if (add_special && add_bos_) ids.push_back(bos_id_);
  const std::vector<Fragment> fragments = special_splitter_->split(text, parse_special);
  bool previous_was_special = true;  // SPM: the first raw fragment gets the leading space too
  for (const Fragment& fragment : fragments) {
    if (fragment.token >= 0) {
      ids.push_back(fragment.token);
      previous_was_special = true;
      continue;
    }
    const std::string_view raw = text.substr(fragment.begin, fragment.end - fragment.begin);
    if (spm_) {
      spm_->encode(SpmEncoder::escape_spaces(raw, add_space_prefix_ && previous_was_special), ids);
    } else {
      bpe_->encode(raw, ids);
    }
    previous_was_special = false;
  }
  if (add_special && add_eos_) ids.push_back(eos_id_);
  return ids;
}

void Tokenizer::check_id(int32_t id) const {
  if (!vocab_.contains(id)) fail("token id {} is out of range (the vocabulary has {} tokens)", id, vocab_.size());
}

std::string Tokenizer::token_to_piece(int32_t id, bool render_special) const {
  check_id(id);
  const TokenType type = vocab_.type(id);
  if (!render_special && (type == TokenType::Control || type == TokenType::Unknown)) return {};
  return pieces_[id];
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool render_special) const {
  std::string text;
  bool strip_leading_space = add_space_prefix_;
  for (int32_t id : ids) {
    check_id(id);
    const TokenType type = vocab_.type(id);
    std::string_view piece = pieces_[id];
    if (!render_special && (type == TokenType::Control || type == TokenType::Unknown)) piece = {};
    // Only the first token's piece loses its space, even when that piece is empty (a BOS).
    if (strip_leading_space && !piece.empty() && piece.front() == ' ') piece.remove_prefix(1);
    strip_leading_space = false;
    text += piece;
  }
  if (clean_spaces_) clean_up_spaces(text);
  return text;
}

bool Tokenizer::is_end_of_generation(int32_t id) const {
  return vocab_.contains(id) && end_of_generation_[id] != 0;
}

const std::string& Tokenizer::token_text(int32_t id) const {
  check_id(id);
  return vocab_.text(id);
}

TokenType Tokenizer::token_type(int32_t id) const {
  check_id(id);
  return vocab_.type(id);
}

std::optional<int32_t> Tokenizer::find_token(std::string_view text) const {
  const int32_t id = vocab_.find(text);
  if (id < 0) return std::nullopt;
  return id;
}

}  // namespace pagedllm
