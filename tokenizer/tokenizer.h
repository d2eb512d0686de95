#pragma once
// Text <-> token ids from a GGUF file's tokenizer metadata, exactly as llama.cpp does it (the
// tokenizer.* keys): SentencePiece-style BPE ("llama") and byte-level BPE with a pre-tokenizer ("gpt2").
//
// Encoding: special tokens are cut out first (§6.1), then each raw fragment goes to the model's encoder.
// Decoding: decode() is llama_detokenize with remove_special = false: for a vocabulary with add_space_prefix
// (SPM) one leading space of the first token's piece is stripped, and the clean_spaces post-pass runs where the
// pre-tokenizer asks for it. StreamingDetokenizer is the llama.cpp CLI's per-token rendering: it never strips a
// leading space and never cleans spaces, so after a BOS the first word keeps its space (" Once upon a time").
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/tokenizer_metadata.h"
#include "tokenizer/vocabulary.h"

namespace pagedllm {

class GgufFile;
class SpecialTokenSplitter;
class SpmEncoder;
class BpeEncoder;

class Tokenizer {
 public:
  // Throws pagedllm::Error on missing or inconsistent tokenizer metadata.
  static std::unique_ptr<Tokenizer> from_gguf(const GgufFile& file);
  static std::unique_ptr<Tokenizer> from_metadata(const TokenizerMetadata& metadata);
  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // add_special: BOS (and EOS) per the model's add_bos/add_eos flags. parse_special: CONTROL/UNKNOWN token texts
  // in `text` become their ids (USER_DEFINED tokens always do).
  std::vector<int32_t> encode(std::string_view text, bool add_special, bool parse_special) const;

  // The raw bytes of one token (may be partial UTF-8). CONTROL/UNKNOWN tokens render as "" unless
  // render_special. Throws pagedllm::Error for an id outside the vocabulary.
  std::string token_to_piece(int32_t id, bool render_special = false) const;
  // The text of a token sequence (see the header comment for the leading-space and clean-up rules).
  std::string decode(std::span<const int32_t> ids, bool render_special = false) const;

  int32_t n_vocab() const { return vocab_.size(); }
  int32_t bos_id() const { return bos_id_; }  // -1 when none
  int32_t eos_id() const { return eos_id_; }  // -1 when none
  int32_t eot_id() const { return eot_id_; }  // -1 when none
  bool add_bos() const { return add_bos_; }
  bool add_eos() const { return add_eos_; }
  bool add_space_prefix() const { return add_space_prefix_; }
  bool clean_spaces() const { return clean_spaces_; }
  bool is_end_of_generation(int32_t id) const;

  const std::string& token_text(int32_t id) const;
  TokenType token_type(int32_t id) const;
  std::optional<int32_t> find_token(std::string_view text) const;
  const std::string& chat_template() const { return chat_template_; }  // "" when absent
  std::string_view model_name() const { return model_name_; }          // "llama" (SPM) or "gpt2" (BPE)
  std::string_view pre_tokenizer_name() const { return pre_name_; }    // "default" when absent

 private:
  Tokenizer();
  void check_id(int32_t id) const;

  std::string model_name_;
  std::string pre_name_;
  Vocabulary vocab_;
  std::unique_ptr<SpecialTokenSplitter> special_splitter_;
  std::unique_ptr<SpmEncoder> spm_;  // model "llama"
  std::unique_ptr<BpeEncoder> bpe_;  // model "gpt2"
  std::vector<std::string> pieces_;  // [n_vocab] token_to_piece with render_special
  std::vector<uint8_t> end_of_generation_;  // [n_vocab] 1 for end-of-generation tokens
  int32_t bos_id_ = -1;
  int32_t eos_id_ = -1;
  int32_t eot_id_ = -1;
  bool add_bos_ = false;
  bool add_eos_ = false;
  bool add_space_prefix_ = false;
  bool clean_spaces_ = false;
  std::string chat_template_;
};

// Streams a generated token sequence as text: push() returns only complete UTF-8 characters (a multi-byte
// character split across byte tokens is held back until it completes), flush() returns whatever is left at the
// end. Pieces are token_to_piece(id, render_special): no leading space is stripped, no spaces are cleaned.
class StreamingDetokenizer {
 public:
  explicit StreamingDetokenizer(const Tokenizer& tokenizer, bool render_special = false);
  std::string push(int32_t id);
  std::string flush();

 private:
  const Tokenizer& tokenizer_;
  bool render_special_;
  std::string pending_;  // bytes of an unfinished character (at most 3)
};

}  // namespace pagedllm
