// libFuzzer target for the Jinja interpreter: a chat template and the conversation it renders, from one input (the
// template, a NUL byte, then the messages as JSON; without a NUL the whole input is the template, rendered over a
// fixed conversation). Every input must end in a rendered prompt or a pagedllm::Error inside the render limits:
// never a crash, undefined behaviour, an escaping exception of another type, a hang or a huge allocation. Built by
// scripts/fuzz.sh with clang, AddressSanitizer and UndefinedBehaviorSanitizer.
//
// With PAGEDLLM_FUZZ_WRITE_SEEDS=DIR in the environment the binary instead writes the built-in templates, each
// followed by a few conversations, into DIR and exits (scripts/fuzz.sh adds the template files of the repository).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "templates/chat_template.h"
#include "templates/jinja_limits.h"

namespace {

using namespace pagedllm;

// Conversations of the shapes templates branch on: a system prompt, alternating turns, content parts, tool calls,
// and values that are not strings where strings are expected.
const char* const kConversations[] = {
    R"([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi!"},
        {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "2+2?"}])",
    R"([{"role": "user", "content": [{"type": "text", "text": "Look"}, {"type": "image"}]}])",
    R"([{"role": "user", "content": "weather?"}, {"role": "assistant", "content": null,
        "tool_calls": [{"type": "function", "function": {"name": "get", "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "content": "sunny"}])",
    R"([{"role": "user", "content": 42}, {"role": "assistant"}, {"role": 7, "content": ["x", {"y": 1.5e300}]}])",
};

const char* kDefaultConversation = kConversations[0];

void write_seeds(const std::string& dir) {
  int index = 0;
  for (const std::string& name : builtin_chat_template_names()) {
    for (const char* conversation : kConversations) {
      std::ofstream out(dir + "/builtin_" + name + "_" + std::to_string(index++) + ".seed", std::ios::binary);
      out << *builtin_chat_template(name) << '\0' << conversation;
      if (!out) {
        std::fprintf(stderr, "cannot write a seed in %s\n", dir.c_str());
        std::exit(1);
      }
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  if (const char* dir = std::getenv("PAGEDLLM_FUZZ_WRITE_SEEDS")) {
    write_seeds(dir);
    std::exit(0);
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const size_t split = input.find('\0');
  const std::string_view source = input.substr(0, split);
  ChatTemplateInputs inputs;
  inputs.add_generation_prompt = size % 2 == 0;
  inputs.bos_token = "<s>";
  inputs.eos_token = "</s>";
  inputs.messages = nlohmann::ordered_json::parse(
      split == std::string_view::npos ? std::string_view(kDefaultConversation) : input.substr(split + 1), nullptr,
      /*allow_exceptions=*/false);
  if (inputs.messages.is_discarded()) inputs.messages = nlohmann::ordered_json::parse(kDefaultConversation);
  // Smaller than the defaults, so that each input runs fast: the limits are what is under test, not their size.
  jinja::RenderLimits limits;
  limits.max_output_bytes = size_t{1} << 20;
  limits.max_steps = 200'000;
  limits.max_bytes_built = int64_t{16} << 20;
  limits.max_work_bytes = int64_t{64} << 20;
  limits.max_seconds = 2.0;
  try {
    const ChatTemplate chat_template(source);
    const std::string prompt = chat_template.render(inputs, limits);
    if (prompt.size() > limits.max_output_bytes) std::abort();  // the limit itself must hold
  } catch (const Error&) {
  }
  return 0;
}
