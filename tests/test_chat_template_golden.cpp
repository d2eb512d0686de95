// Golden tests of chat-template rendering: every case in tests/golden/templates/cases.json (written by
// scripts/gen_template_goldens.py with Python's jinja2, set up as Hugging Face's apply_chat_template sets it up) must
// render byte for byte the same here, or fail the same way: raise_exception cases with the same message, other
// template errors with some TemplateError. Templates come from ../shared/chat-templates (the real ones), from
// tests/golden/templates (SmolLM2's own and hand-written tricky ones) and from the built-in formats.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "templates/chat_template.h"
#include "templates/jinja_error.h"
#include "templates/jinja_limits.h"

namespace {

using nlohmann::ordered_json;

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE_MESSAGE(in.good(), "cannot open " << path);
  std::ostringstream contents;
  contents << in.rdbuf();
  return contents.str();
}

const ordered_json& golden_cases() {
  static const ordered_json cases =
      ordered_json::parse(read_file(std::string(PAGEDLLM_SOURCE_DIR) + "/tests/golden/templates/cases.json"));
  return cases;
}

std::string template_source(const ordered_json& test_case) {
  std::string origin = test_case.at("origin");
  std::string name = test_case.at("template");
  if (origin == "shared") return read_file(std::string(PAGEDLLM_SHARED_DIR) + "/chat-templates/" + name);
  if (origin == "golden") return read_file(std::string(PAGEDLLM_SOURCE_DIR) + "/tests/golden/templates/" + name);
  std::optional<std::string> builtin = pagedllm::builtin_chat_template(name);
  REQUIRE_MESSAGE(builtin.has_value(), "no built-in chat template named " << name);
  return *builtin;
}

std::string describe(const ordered_json& test_case) {
  return test_case.at("origin").get<std::string>() + ":" + test_case.at("template").get<std::string>() + " over '" +
         test_case.at("conversation").get<std::string>() + "'" +
         (test_case.at("add_generation_prompt").get<bool>() ? " with generation prompt" : "") + " bos=" +
         test_case.at("bos_token").dump();
}

// Runs `pagedllm template ARGS` with stdout and stderr in files; returns the exit status.
int run_template_command(const std::string& arguments, std::string& out, std::string& err) {
  std::filesystem::path dir = std::filesystem::temp_directory_path();
  std::string stdout_path = (dir / "pagedllm_template_test.out").string();
  std::string stderr_path = (dir / "pagedllm_template_test.err").string();
  std::string command = std::string("\"") + PAGEDLLM_BINARY + "\" template " + arguments + " > \"" + stdout_path +
                        "\" 2> \"" + stderr_path + "\"";
  int status = std::system(command.c_str());
  out = read_file(stdout_path);
  err = read_file(stderr_path);
  return status;
}

std::string write_temp_json(const std::string& name, const ordered_json& value) {
  std::string path = (std::filesystem::temp_directory_path() / name).string();
  std::ofstream(path, std::ios::binary) << value.dump();
  return path;
}

}  // namespace

TEST_CASE("golden cases render exactly as Python's jinja2 renders them") {
  const ordered_json& golden = golden_cases();
  REQUIRE(golden.at("cases").size() > 0);
  std::map<std::string, std::string> sources;  // parse each template file once per name
  int rendered = 0;
  int raised = 0;
  int failed = 0;
  for (const ordered_json& test_case : golden.at("cases")) {
    INFO(describe(test_case));
    std::string key = test_case.at("origin").get<std::string>() + ":" + test_case.at("template").get<std::string>();
    if (!sources.count(key)) sources[key] = template_source(test_case);
    pagedllm::ChatTemplateInputs inputs;
    inputs.messages = golden.at("conversations").at(test_case.at("conversation").get<std::string>());
    inputs.add_generation_prompt = test_case.at("add_generation_prompt");
    inputs.bos_token = test_case.at("bos_token");
    inputs.eos_token = test_case.at("eos_token");
    if (test_case.contains("expected")) {
      std::string output;
      CHECK_NOTHROW(output = pagedllm::render_chat_template(sources[key], inputs));
      CHECK(output == test_case.at("expected").get<std::string>());
      ++rendered;
    } else if (test_case.contains("expected_exception")) {
      try {
        pagedllm::render_chat_template(sources[key], inputs);
        FAIL("the template should have raised: " << test_case.at("expected_exception").get<std::string>());
      } catch (const pagedllm::jinja::TemplateError& error) {
        CHECK(error.kind() == pagedllm::jinja::TemplateError::Kind::raised);
        CHECK(error.detail() == test_case.at("expected_exception").get<std::string>());
      }
      ++raised;
    } else {
      INFO("jinja2 failed with " << test_case.at("expected_error").get<std::string>());
      CHECK_THROWS_AS(pagedllm::render_chat_template(sources[key], inputs), pagedllm::jinja::TemplateError);
      ++failed;
    }
  }
  MESSAGE(rendered << " renders, " << raised << " raise_exception cases, " << failed << " failing cases checked");
}

TEST_CASE("every golden template renders a long conversation far inside the render limits") {
  // A conversation of 400 messages, 1.2 MB in all: each template over the golden conversation it renders without an
  // exception, its turns repeated 100 times and each content 500 times longer. The real templates use well under
  // 1% of the steps, 2% of the work and 10% of the memory the limits allow (measured: 4-9 MiB of work and 4-7 MiB
  // built for a 1.2 MB prompt).
  const ordered_json& conversations = golden_cases().at("conversations");
  std::set<std::string> checked;
  for (const ordered_json& test_case : golden_cases().at("cases")) {
    const std::string name = test_case.at("origin").get<std::string>() + ":" + test_case.at("template").get<std::string>();
    if (checked.count(name) || test_case.contains("expected_exception") || test_case.contains("expected_error") ||
        test_case.at("conversation") != "multi_turn_no_system") {
      continue;
    }
    checked.insert(name);
    CAPTURE(name);
    pagedllm::ChatTemplateInputs inputs;
    inputs.add_generation_prompt = true;
    inputs.bos_token = test_case.at("bos_token");
    inputs.eos_token = test_case.at("eos_token");
    inputs.messages = ordered_json::array();
    for (int repeat = 0; repeat < 100; ++repeat) {
      for (ordered_json message : conversations.at("multi_turn_no_system")) {
        std::string content;
        for (int i = 0; i < 500; ++i) content += message.at("content").get<std::string>();
        message["content"] = content;
        inputs.messages.push_back(std::move(message));
      }
    }
    const pagedllm::jinja::RenderLimits limits;
    pagedllm::jinja::RenderBudget budget(limits);
    const std::string prompt = pagedllm::ChatTemplate(template_source(test_case)).render(inputs, budget);
    MESSAGE(name << ": " << budget.steps_used() << " steps, " << (budget.work_done() >> 20) << " MiB of work, "
                 << (budget.bytes_built() >> 20) << " MiB built for a " << (prompt.size() >> 10) << " KiB prompt");
    // The hand-written test templates (tricky-*, undefined-*) print summaries or many filters of each message, not
    // a chat prompt: they only must render.
    if (name.find(":tricky-") != std::string::npos || name.find(":undefined-") != std::string::npos) continue;
    CHECK(prompt.size() > 1'000'000);
    CHECK(budget.steps_used() < limits.max_steps / 100);
    CHECK(budget.work_done() < limits.max_work_bytes / 50);
    CHECK(budget.bytes_built() < limits.max_bytes_built / 10);
  }
  CHECK(checked.size() >= 10);  // the shared templates, SmolLM2's, the tricky ones and the built-ins
}

TEST_CASE("the goldens cover SmolLM2's template, the four shared ones and every built-in with 3+ conversations") {
  std::map<std::string, std::set<std::string>> conversations_rendered;  // template -> conversations with output
  for (const ordered_json& test_case : golden_cases().at("cases")) {
    if (test_case.contains("expected")) {
      conversations_rendered[test_case.at("template").get<std::string>()].insert(test_case.at("conversation"));
    }
  }
  std::vector<std::string> required = {
      "HuggingFaceTB-SmolLM2-135M-Instruct.jinja",  "meta-llama-Llama-3.1-8B-Instruct.jinja",
      "mistralai-Mistral-Nemo-Instruct-2407.jinja", "google-gemma-2-2b-it.jinja",
      "microsoft-Phi-3.5-mini-instruct.jinja",      "google-gemma-3-it.jinja",
  };
  for (const std::string& name : pagedllm::builtin_chat_template_names()) required.push_back(name);
  for (const std::string& name : required) {
    INFO(name);
    CHECK(conversations_rendered[name].size() >= 3);
  }
}

TEST_CASE("built-in templates are the sources the goldens were generated from") {
  // A built-in edited without re-running scripts/gen_template_goldens.py shows up here, by name.
  std::set<std::string> checked;
  for (const ordered_json& test_case : golden_cases().at("cases")) {
    if (test_case.at("origin") != "builtin") continue;
    std::string name = test_case.at("template");
    if (!checked.insert(name).second) continue;
    INFO("built-in " << name << " changed: re-run scripts/gen_template_goldens.py");
    CHECK(pagedllm::builtin_chat_template(name).value_or("") == test_case.at("source").get<std::string>());
  }
  CHECK(checked.size() == pagedllm::builtin_chat_template_names().size());
}

TEST_CASE("pagedllm template prints exactly the golden prompt, reports raised exceptions, falls back with a notice") {
  const ordered_json& golden = golden_cases();
  // A shared template over the conversation with quotes, tabs, newlines and non-ASCII text.
  const ordered_json* chosen = nullptr;
  const ordered_json* raising = nullptr;
  for (const ordered_json& test_case : golden.at("cases")) {
    if (test_case.at("origin") != "shared") continue;
    if (!chosen && test_case.contains("expected") && test_case.at("conversation") == "special_characters" &&
        test_case.at("add_generation_prompt").get<bool>() &&
        test_case.at("template") == "meta-llama-Llama-3.1-8B-Instruct.jinja") {
      chosen = &test_case;
    }
    if (!raising && test_case.contains("expected_exception")) raising = &test_case;
  }
  REQUIRE(chosen != nullptr);
  REQUIRE(raising != nullptr);
  std::string shared = std::string(PAGEDLLM_SHARED_DIR) + "/chat-templates/";
  std::string out;
  std::string err;

  std::string messages = write_temp_json("pagedllm_template_special.json",
                                         golden.at("conversations").at(chosen->at("conversation").get<std::string>()));
  int status = run_template_command("--template-file \"" + shared + chosen->at("template").get<std::string>() +
                                        "\" --messages \"" + messages + "\" --add-generation-prompt --bos-token '" +
                                        chosen->at("bos_token").get<std::string>() + "' --eos-token '" +
                                        chosen->at("eos_token").get<std::string>() + "'",
                                    out, err);
  CHECK(status == 0);
  CHECK(out == chosen->at("expected").get<std::string>());  // byte for byte: no newline added
  CHECK(err.empty());

  messages = write_temp_json("pagedllm_template_raising.json",
                             golden.at("conversations").at(raising->at("conversation").get<std::string>()));
  status = run_template_command("--template-file \"" + shared + raising->at("template").get<std::string>() +
                                    "\" --messages \"" + messages + "\"",
                                out, err);
  CHECK(status != 0);
  CHECK(err.find(raising->at("expected_exception").get<std::string>()) != std::string::npos);

  // stories260K has no chat template: the built-in chatml format, with a one-line notice on stderr.
  messages = write_temp_json("pagedllm_template_plain.json",
                             ordered_json::parse(R"([{"role": "user", "content": "Hi"}])"));
  std::string model = std::string(PAGEDLLM_SHARED_DIR) + "/models/stories260K.gguf";
  status = run_template_command("-m \"" + model + "\" --messages \"" + messages + "\"", out, err);
  CHECK(status == 0);
  CHECK(out == "<|im_start|>user\nHi<|im_end|>\n");
  CHECK(err.find("notice:") == 0);
  CHECK(std::count(err.begin(), err.end(), '\n') == 1);
}

TEST_CASE("a Gemma 3 file's own template is used as is; one without gets the built-in Gemma turns with a notice") {
  const std::string gemma3 =
      read_file(std::string(PAGEDLLM_SOURCE_DIR) + "/tests/golden/templates/google-gemma-3-it.jinja");
  // The family's fallback is "gemma"; a template in the file wins over it (its rendering is checked byte for byte
  // against jinja2 with every other golden case).
  const pagedllm::ChosenChatTemplate own = pagedllm::choose_chat_template("", gemma3, "gemma");
  CHECK(own.source == gemma3);
  CHECK(own.notice.empty());
  const pagedllm::ChosenChatTemplate fallback = pagedllm::choose_chat_template("", "", "gemma");
  CHECK(fallback.source == pagedllm::builtin_chat_template("gemma").value());
  CHECK(fallback.notice.find("gemma") != std::string::npos);
  // On a plain conversation the built-in format and Gemma 3's own template make the same prompt.
  pagedllm::ChatTemplateInputs inputs;
  inputs.messages = ordered_json::parse(R"([{"role": "system", "content": "Be brief."},
      {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."},
      {"role": "user", "content": "What is 2 + 2?"}])");
  inputs.add_generation_prompt = true;
  inputs.bos_token = "<bos>";
  const std::string own_prompt = pagedllm::render_chat_template(gemma3, inputs);
  CHECK(own_prompt.starts_with("<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>"));
  CHECK(pagedllm::render_chat_template(fallback.source, inputs) == own_prompt);
}
