#include "tokenizer/tokenizer_metadata.h"

#include "common/error.h"
#include "model_loader/gguf.h"

namespace pagedllm {
namespace {

std::optional<TokenizerMetadata::StoredId> find_id(const GgufFile& file, std::string_view key) {
  const std::optional<int64_t> id = file.find_int(key);
  if (!id) return std::nullopt;
  return TokenizerMetadata::StoredId{*id, std::string(key)};
}

std::optional<TokenizerMetadata::StoredId> find_id_either(const GgufFile& file, std::string_view key,
                                                          std::string_view old_key) {
  if (auto id = find_id(file, key)) return id;
  return find_id(file, old_key);
}

}  // namespace

TokenizerMetadata read_tokenizer_metadata(const GgufFile& file) {
  TokenizerMetadata metadata;
  metadata.source = file.path();

  auto model = file.find_string("tokenizer.ggml.model");
  if (!model) fail("{}: tokenizer.ggml.model is missing (the file has no tokenizer)", file.path());
  metadata.model = std::move(*model);
  metadata.pre = file.find_string("tokenizer.ggml.pre");

  auto tokens = file.find_string_array("tokenizer.ggml.tokens");
  if (!tokens) fail("{}: tokenizer.ggml.tokens is missing", file.path());
  metadata.tokens = std::move(*tokens);
  metadata.scores = file.find_float_array("tokenizer.ggml.scores");
  metadata.token_types = file.find_int_array("tokenizer.ggml.token_type");
  metadata.merges = file.find_string_array("tokenizer.ggml.merges");

  metadata.bos_id = find_id(file, "tokenizer.ggml.bos_token_id");
  metadata.eos_id = find_id(file, "tokenizer.ggml.eos_token_id");
  metadata.eot_id = find_id(file, "tokenizer.ggml.eot_token_id");
  metadata.eom_id = find_id(file, "tokenizer.ggml.eom_token_id");
  metadata.unknown_id = find_id(file, "tokenizer.ggml.unknown_token_id");
  metadata.separator_id = find_id(file, "tokenizer.ggml.seperator_token_id");  // sic: the official spelling
  metadata.padding_id = find_id(file, "tokenizer.ggml.padding_token_id");
  metadata.fim_prefix_id = find_id_either(file, "tokenizer.ggml.fim_pre_token_id", "tokenizer.ggml.prefix_token_id");
  metadata.fim_suffix_id = find_id_either(file, "tokenizer.ggml.fim_suf_token_id", "tokenizer.ggml.suffix_token_id");
  metadata.fim_middle_id = find_id_either(file, "tokenizer.ggml.fim_mid_token_id", "tokenizer.ggml.middle_token_id");
  metadata.fim_pad_id = find_id(file, "tokenizer.ggml.fim_pad_token_id");
  metadata.fim_repo_id = find_id(file, "tokenizer.ggml.fim_rep_token_id");
  metadata.fim_separator_id = find_id(file, "tokenizer.ggml.fim_sep_token_id");

  metadata.add_bos = file.find_bool("tokenizer.ggml.add_bos_token");
  metadata.add_eos = file.find_bool("tokenizer.ggml.add_eos_token");
  metadata.add_space_prefix = file.find_bool("tokenizer.ggml.add_space_prefix");
  metadata.chat_template = file.find_string("tokenizer.chat_template").value_or("");
  return metadata;
}

}  // namespace pagedllm
