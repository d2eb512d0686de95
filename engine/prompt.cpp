#include "engine/prompt.h"

#include <utility>

namespace pagedllm {

std::vector<int32_t> tokenize_prompt(const Tokenizer& tokenizer, std::string_view text, PromptSource source,
                                     bool add_bos, bool parse_special) {
  std::vector<int32_t> tokens = tokenizer.encode(text, add_bos, parse_special);
  // A template that writes bos_token itself, for a model that also adds one, would start with two.
  const int32_t bos = tokenizer.bos_id();
  if (source == PromptSource::ChatTemplate && bos >= 0 && tokens.size() >= 2 && tokens[0] == bos && tokens[1] == bos) {
    tokens.erase(tokens.begin());
  }
  return tokens;
}

ChatTemplateInputs chat_template_inputs(const Tokenizer& tokenizer, nlohmann::ordered_json messages,
                                        bool add_generation_prompt) {
  ChatTemplateInputs inputs;
  inputs.messages = std::move(messages);
  inputs.add_generation_prompt = add_generation_prompt;
  const int32_t bos = tokenizer.bos_id(), eos = tokenizer.eos_id();
  inputs.bos_token = bos >= 0 ? tokenizer.token_text(bos) : "";
  inputs.eos_token = eos >= 0 ? tokenizer.token_text(eos) : "";
  return inputs;
}

}  // namespace pagedllm
