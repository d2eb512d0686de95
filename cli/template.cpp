// `pagedllm template`: render a conversation through a chat template and print the prompt exactly as a model would
// see it (no newline added), for people debugging a model's template. The template is --template-file, else the
// model's own (-m), else a built-in (--chat-template); a model without a usable template falls back to
// --chat-template (chatml by default) with a notice. An exception the template raises is the command's error.
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/cli_support.h"
#include "cli/commands.h"
#include "common/error.h"
#include "model_loader/gguf.h"
#include "templates/chat_template.h"
#include "templates/jinja_error.h"
#include "tokenizer/tokenizer.h"

namespace pagedllm::cli {
namespace {

struct TemplateOptions {
  std::string model_path;
  std::string template_file;
  std::string messages_path;
  bool add_generation_prompt = false;
  std::string bos_token;
  std::string eos_token;
  std::string chat_template = "chatml";
};

std::string builtin_source(const std::string& name) {
  std::optional<std::string> source = builtin_chat_template(name);
  if (!source) fail("--chat-template '{}' is not a built-in template (known: {})", name, builtin_chat_template_list());
  return *source;
}

// CONV.json: a JSON array of message objects, each with a string "role" (other fields pass through to the
// template, as tool calls and content parts do). "-" reads standard input.
nlohmann::ordered_json read_conversation(const std::string& path) {
  const size_t first = path.find_first_not_of(" \t\r\n");
  if (path != "-" && first != std::string::npos && (path[first] == '[' || path[first] == '{') &&
      !std::filesystem::exists(path)) {
    fail("--messages takes a file name (or - for standard input), not the JSON itself: put the conversation in a "
         "file, or pipe it in with --messages -");
  }
  const std::string text = read_text_input(path, kMaxMessagesFileBytes, "a messages file (--messages)");
  nlohmann::ordered_json conversation;
  try {
    conversation = nlohmann::ordered_json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail("{}: not valid JSON: {}", path, e.what());
  }
  if (!conversation.is_array()) {
    fail("{}: expected a JSON array of {{\"role\", \"content\"}} messages, found a JSON {}", path,
         conversation.type_name());
  }
  for (size_t i = 0; i < conversation.size(); ++i) {
    const nlohmann::ordered_json& message = conversation[i];
    if (!message.is_object()) fail("{}: message {} is a JSON {}, not an object", path, i, message.type_name());
    if (!message.contains("role") || !message["role"].is_string()) {
      fail("{}: message {} has no string \"role\"", path, i);
    }
  }
  return conversation;
}

// The model's own template when the interpreter accepts it; otherwise the fallback built-in, with a notice.
std::string model_template_or_fallback(const std::string& model_path, const std::string& own,
                                       const std::string& fallback_name) {
  std::string fallback = builtin_source(fallback_name);  // a bad name is an error even when unused
  std::string problem;
  if (own.empty()) {
    problem = "has no chat template";
  } else {
    try {
      ChatTemplate parsed(own);
      return own;
    } catch (const jinja::TemplateError& e) {
      if (e.kind() != jinja::TemplateError::Kind::syntax) throw;
      problem = fmt::format("has a chat template this interpreter cannot run ({})", e.what());
    }
  }
  fmt::print(stderr, "notice: {} {}; using the built-in {} format instead (--chat-template NAME: {})\n", model_path,
             problem, fallback_name, builtin_chat_template_list());
  return fallback;
}

void run_template(const TemplateOptions& options, bool bos_given, bool eos_given, bool chat_template_given) {
  if (options.model_path.empty() && options.template_file.empty() && !chat_template_given) {
    fail("give a template: -m MODEL.gguf (its own template), --template-file T.jinja or --chat-template NAME");
  }
  ChatTemplateInputs inputs;
  inputs.messages = read_conversation(options.messages_path);
  inputs.add_generation_prompt = options.add_generation_prompt;

  std::string source;
  std::string model_bos;
  std::string model_eos;
  if (!options.model_path.empty()) {
    std::unique_ptr<GgufFile> file = GgufFile::open(options.model_path);
    std::unique_ptr<Tokenizer> tokenizer = Tokenizer::from_gguf(*file);
    if (tokenizer->bos_id() >= 0) model_bos = tokenizer->token_text(tokenizer->bos_id());
    if (tokenizer->eos_id() >= 0) model_eos = tokenizer->token_text(tokenizer->eos_id());
    if (options.template_file.empty()) {
      source = model_template_or_fallback(options.model_path, tokenizer->chat_template(), options.chat_template);
    }
  }
  if (!options.template_file.empty()) {
    source = read_text_file(options.template_file, kMaxTemplateFileBytes, "a template file (--template-file)");
  } else if (options.model_path.empty()) {
    source = builtin_source(options.chat_template);
  }
  inputs.bos_token = bos_given ? options.bos_token : model_bos;
  inputs.eos_token = eos_given ? options.eos_token : model_eos;

  std::string prompt = render_chat_template(source, inputs);
  std::fwrite(prompt.data(), 1, prompt.size(), stdout);
  std::fflush(stdout);
}

}  // namespace

void add_template_command(CLI::App& app) {
  auto options = std::make_shared<TemplateOptions>();
  CLI::App* cmd = app.add_subcommand(
      "template", "Render a conversation (JSON messages) through a chat template and print the exact prompt");
  cmd->add_option("-m,--model", options->model_path,
                  "GGUF model: its own chat template (tokenizer.chat_template) and its BOS/EOS tokens");
  cmd->add_option("--template-file", options->template_file,
                  fmt::format("A Jinja chat template file, at most {} (takes precedence over -m)",
                              byte_limit_text(kMaxTemplateFileBytes)));
  cmd->add_option("--messages", options->messages_path,
                  fmt::format("File holding the conversation, a JSON array of {{\"role\", \"content\"}} objects, "
                              "at most {} (\"-\" reads standard input)",
                              byte_limit_text(kMaxMessagesFileBytes)))
      ->required();
  cmd->add_flag("--add-generation-prompt", options->add_generation_prompt,
                "End with the header of an assistant turn (add_generation_prompt=true)");
  CLI::Option* bos = cmd->add_option("--bos-token", options->bos_token, "bos_token (default: the model's, else empty)");
  CLI::Option* eos = cmd->add_option("--eos-token", options->eos_token, "eos_token (default: the model's, else empty)");
  CLI::Option* chat_template =
      cmd->add_option("--chat-template", options->chat_template,
                      fmt::format("Built-in format when there is no --template-file, and the fallback when the "
                                  "model has no usable template: {}",
                                  builtin_chat_template_list()))
          ->capture_default_str();
  cmd->callback([options, bos, eos, chat_template] {
    run_template(*options, bos->count() > 0, eos->count() > 0, chat_template->count() > 0);
  });
}

}  // namespace pagedllm::cli
