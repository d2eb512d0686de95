#pragma once
// Chat templates: a conversation (JSON messages) -> the prompt text a chat model was trained on, by running the
// model's own Jinja template (`tokenizer.chat_template` in a GGUF) through the interpreter in templates/jinja_*, or
// one of the built-in formats. The variables a template sees are exactly those Hugging Face's apply_chat_template
// defines without tools: messages, add_generation_prompt, bos_token, eos_token and raise_exception.
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "templates/jinja_interpreter.h"

namespace pagedllm {

struct ChatTemplateInputs {
  // [{"role": ..., "content": ...}, ...]. Ordered so that nested objects (tool-call arguments) keep the key order
  // they were written in, as Python's dicts do; a nlohmann::json converts to it implicitly.
  nlohmann::ordered_json messages = nlohmann::ordered_json::array();
  bool add_generation_prompt = false;
  std::string bos_token;
  std::string eos_token;
};

// A parsed template, for rendering many conversations (a chat re-renders every turn).
class ChatTemplate {
 public:
  // Throws jinja::TemplateError (a pagedllm::Error) when the interpreter cannot run `source`.
  explicit ChatTemplate(std::string_view source);
  // Throws jinja::TemplateError when the template fails or calls raise_exception (kind `raised`, with the
  // template's message as detail()), or runs past `limits` (kind `limit`: "the template is too expensive: ...").
  // Turning the conversation into template values counts against the same limits.
  std::string render(const ChatTemplateInputs& inputs, const jinja::RenderLimits& limits = {}) const;
  // The same, charging `budget` (which then tells what the render cost).
  std::string render(const ChatTemplateInputs& inputs, jinja::RenderBudget& budget) const;

 private:
  std::shared_ptr<const jinja::Template> template_;
};

// Parses and renders in one go; throws as ChatTemplate does.
std::string render_chat_template(const std::string& template_source, const ChatTemplateInputs& inputs);

// Jinja source of a built-in format (chatml, llama2, llama3, mistral, gemma, phi3, zephyr); nullopt otherwise.
std::optional<std::string> builtin_chat_template(std::string_view name);
std::vector<std::string> builtin_chat_template_names();
// The names joined with ", ", for help texts and error messages.
std::string builtin_chat_template_list();

// The template a generating command uses: the built-in `requested` when given (an Error names the known ones if it
// is not one), else the model's own if the interpreter can render a short probe conversation with it, else the
// built-in `fallback` (the model family's, chatml for every family supported today) with `notice` saying why.
struct ChosenChatTemplate {
  std::string source;
  std::string description;  // "the model's own", "built-in NAME", "built-in chatml (fallback)"
  std::string notice;       // non-empty when the model's template was absent or unusable
};
ChosenChatTemplate choose_chat_template(std::string_view requested, const std::string& model_template,
                                        std::string_view fallback = "chatml");

}  // namespace pagedllm
