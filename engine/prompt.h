#pragma once
// Prompt text to token ids, the one way run, chat and batch do it, and the chat-template variables a model's
// tokenizer implies.
#include <cstdint>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "templates/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace pagedllm {

enum class PromptSource {
  Text,          // the user's own text: tokenized as given (two BOS when it starts with the BOS text, as llama.cpp)
  ChatTemplate,  // rendered by a chat template, which may write the BOS text itself: never two BOS
};

// add_bos: add the model's BOS when its tokenizer wants one. parse_special: control-token text becomes its token.
std::vector<int32_t> tokenize_prompt(const Tokenizer& tokenizer, std::string_view text, PromptSource source,
                                     bool add_bos, bool parse_special);

// The inputs of a chat template for `messages`, with bos_token and eos_token as the model's tokenizer spells them.
ChatTemplateInputs chat_template_inputs(const Tokenizer& tokenizer, nlohmann::ordered_json messages,
                                        bool add_generation_prompt);

}  // namespace pagedllm
