// Chat templates (see chat_template.h). The built-in formats are Jinja sources run through the same interpreter as
// a model's own template, written here after each family's published prompt format. scripts/gen_template_goldens.py
// reads them from this file (the kBuiltinTemplates table, one R"jinja(...)jinja" literal each) to render the same
// sources with Python's jinja2 for the golden tests.
#include "templates/chat_template.h"

#include <utility>

#include <fmt/format.h>

#include "common/error.h"

namespace pagedllm {
namespace {

struct BuiltinTemplate {
  const char* name;
  const char* source;
};

// Roles must alternate user/assistant after an optional system message in the formats that cannot express
// anything else; those raise, as their published templates do. Gemma has no system role: a system message is
// folded into the first user turn (as Gemma 3's own template does) rather than refused.
constexpr BuiltinTemplate kBuiltinTemplates[] = {
    {"chatml", R"jinja(
{%- for message in messages %}
    {{- '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
)jinja"},
    {"llama2", R"jinja(
{%- if messages and messages[0]['role'] == 'system' %}
    {%- set system_prompt = messages[0]['content'] | trim %}
    {%- set conversation = messages[1:] %}
{%- else %}
    {%- set system_prompt = '' %}
    {%- set conversation = messages %}
{%- endif %}
{%- for message in conversation %}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}
        {{- raise_exception('llama2 format: after an optional system message, '
                            'roles must alternate user/assistant/user/...') }}
    {%- endif %}
    {%- if message['role'] == 'user' %}
        {%- set content = message['content'] | trim %}
        {%- if loop.first and system_prompt %}
            {%- set content = '<<SYS>>\n' + system_prompt + '\n<</SYS>>\n\n' + content %}
        {%- endif %}
        {{- bos_token + '[INST] ' + content + ' [/INST]' }}
    {%- else %}
        {{- ' ' + message['content'] | trim + ' ' + eos_token }}
    {%- endif %}
{%- endfor %}
)jinja"},
    {"llama3", R"jinja(
{{- bos_token }}
{%- for message in messages %}
    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
{%- endif %}
)jinja"},
    {"mistral", R"jinja(
{%- if messages and messages[0]['role'] == 'system' %}
    {%- set system_prompt = messages[0]['content'] %}
    {%- set conversation = messages[1:] %}
{%- else %}
    {%- set system_prompt = '' %}
    {%- set conversation = messages %}
{%- endif %}
{{- bos_token }}
{%- for message in conversation %}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}
        {{- raise_exception('mistral format: after an optional system message, '
                            'roles must alternate user/assistant/user/...') }}
    {%- endif %}
    {%- if message['role'] == 'user' %}
        {%- if loop.first and system_prompt %}
            {{- '[INST] ' + system_prompt + '\n\n' + message['content'] + ' [/INST]' }}
        {%- else %}
            {{- '[INST] ' + message['content'] + ' [/INST]' }}
        {%- endif %}
    {%- else %}
        {{- ' ' + message['content'] + eos_token }}
    {%- endif %}
{%- endfor %}
)jinja"},
    {"gemma", R"jinja(
{{- bos_token }}
{%- if messages and messages[0]['role'] == 'system' %}
    {%- set system_prompt = messages[0]['content'] | trim + '\n\n' %}
    {%- set conversation = messages[1:] %}
{%- else %}
    {%- set system_prompt = '' %}
    {%- set conversation = messages %}
{%- endif %}
{%- for message in conversation %}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}
        {{- raise_exception('gemma format: after an optional system message, '
                            'roles must alternate user/assistant/user/...') }}
    {%- endif %}
    {%- set role = 'model' if message['role'] == 'assistant' else message['role'] %}
    {{- '<start_of_turn>' + role + '\n' + (system_prompt if loop.first else '')
        + message['content'] | trim + '<end_of_turn>\n' }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<start_of_turn>model\n' }}
{%- endif %}
)jinja"},
    {"phi3", R"jinja(
{%- for message in messages %}
    {%- if message['role'] != 'system' or message['content'] %}
        {{- '<|' + message['role'] + '|>\n' + message['content'] + '<|end|>\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|assistant|>\n' }}
{%- else %}
    {{- eos_token }}
{%- endif %}
)jinja"},
    {"zephyr", R"jinja(
{%- for message in messages %}
    {{- '<|' + message['role'] + '|>\n' + message['content'] + eos_token + '\n' }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|assistant|>\n' }}
{%- endif %}
)jinja"},
};

}  // namespace

ChatTemplate::ChatTemplate(std::string_view source) : template_(std::make_shared<const jinja::Template>(source)) {}

std::string ChatTemplate::render(const ChatTemplateInputs& inputs, const jinja::RenderLimits& limits) const {
  jinja::RenderBudget budget(limits);
  return render(inputs, budget);
}

std::string ChatTemplate::render(const ChatTemplateInputs& inputs, jinja::RenderBudget& budget) const {
  jinja::RenderBudget::Activation active(budget);
  jinja::Variables variables = {
      {"messages", jinja::Value::from_json(inputs.messages)},
      {"add_generation_prompt", jinja::Value::boolean(inputs.add_generation_prompt)},
      {"bos_token", jinja::Value::string(inputs.bos_token)},
      {"eos_token", jinja::Value::string(inputs.eos_token)},
      {"raise_exception", jinja::raise_exception_function()},
  };
  return template_->render(variables, budget);
}

std::string render_chat_template(const std::string& template_source, const ChatTemplateInputs& inputs) {
  return ChatTemplate(template_source).render(inputs);
}

std::optional<std::string> builtin_chat_template(std::string_view name) {
  for (const BuiltinTemplate& builtin : kBuiltinTemplates) {
    if (name == builtin.name) return std::string(builtin.source);
  }
  return std::nullopt;
}

std::vector<std::string> builtin_chat_template_names() {
  std::vector<std::string> names;
  for (const BuiltinTemplate& builtin : kBuiltinTemplates) names.emplace_back(builtin.name);
  return names;
}

std::string builtin_chat_template_list() {
  std::string names;
  for (const auto& name : builtin_chat_template_names()) names += (names.empty() ? "" : ", ") + name;
  return names;
}

ChosenChatTemplate choose_chat_template(std::string_view requested, const std::string& model_template,
                                        std::string_view fallback) {
  if (!requested.empty()) {
    auto source = builtin_chat_template(requested);
    if (!source) fail("--chat-template '{}' is not a built-in template (known: {})", requested, builtin_chat_template_list());
    return {*source, fmt::format("built-in {}", requested), ""};
  }
  std::string problem;
  if (model_template.empty()) {
    problem = "the model file has no chat template";
  } else {
    // A short conversation shows whether the interpreter can run the template at all.
    ChatTemplateInputs probe;
    probe.messages = nlohmann::ordered_json::array({{{"role", "user"}, {"content", "Hello"}},
                                                    {{"role", "assistant"}, {"content", "Hi!"}},
                                                    {{"role", "user"}, {"content", "How are you?"}}});
    probe.add_generation_prompt = true;
    try {
      render_chat_template(model_template, probe);
      return {model_template, "the model's own", ""};
    } catch (const Error& e) {
      problem = fmt::format("the model's chat template cannot be used ({})", e.what());
    }
  }
  auto source = builtin_chat_template(fallback);
  if (!source) fail("{}, and the built-in {} template is missing", problem, fallback);
  return {*source, fmt::format("built-in {} (fallback)", fallback),
          fmt::format("{}; using the built-in {} format (choose one with --chat-template NAME: {})", problem,
                      fallback, builtin_chat_template_list())};
}

}  // namespace pagedllm
