// `pagedllm chat`: an interactive conversation with the model in a terminal, its history kept in the KV cache
// (engine/chat_session.h); or, when stdin is not a terminal, one user turn per input line, for scripts and tests.
#include <signal.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/cli_support.h"
#include "cli/commands.h"
#include "cli/line_input.h"
#include "common/error.h"
#include "common/timing.h"
#include "engine/chat_session.h"
#include "engine/model.h"
#include "engine/model_runner.h"
#include "engine/prompt.h"
#include "engine/scheduler.h"
#include "engine/stats_report.h"
#include "templates/chat_template.h"

namespace pagedllm::cli {
namespace {

struct ChatOptions {
  GenerationFlags generation;
  std::string system_prompt;
  std::string system_file;
  std::string chat_template;
  int n_predict = -1;
  int batch_tokens = 512;
  bool no_color = false;
  bool no_history = false;
  bool json = false;
};

// ------------------------------------------------------------------------------------------------ Ctrl-C

// Ctrl-C during an answer stops it (checked before every forward); at other times it does what it always does.
// While the line editor reads, the terminal sends no SIGINT at all (line_input.cpp), so Ctrl-C clears the line.
std::atomic<bool> g_generating{false};
std::atomic<bool> g_stop_generation{false};

extern "C" void on_interrupt(int) {
  if (g_generating.load()) {
    g_stop_generation.store(true);
    return;
  }
  signal(SIGINT, SIG_DFL);
  raise(SIGINT);
}

class InterruptHandler {
 public:
  InterruptHandler() {
    struct sigaction action {};
    action.sa_handler = on_interrupt;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    sigaction(SIGINT, &action, &previous_);
  }
  ~InterruptHandler() { sigaction(SIGINT, &previous_, nullptr); }
  InterruptHandler(const InterruptHandler&) = delete;
  InterruptHandler& operator=(const InterruptHandler&) = delete;

 private:
  struct sigaction previous_ {};
};

// Marks the span of one answer for the handler, also when the answer throws.
class GeneratingScope {
 public:
  GeneratingScope() {
    g_stop_generation.store(false);
    g_generating.store(true);
  }
  ~GeneratingScope() { g_generating.store(false); }
};

// Keys typed while an answer streams must not scatter over it: the terminal stops echoing them (they stay queued
// and the line editor shows them at the next prompt). Ctrl-C still raises SIGINT.
class EchoOffScope {
 public:
  explicit EchoOffScope(bool active) {
    if (!active || tcgetattr(STDIN_FILENO, &saved_) != 0) return;
    termios quiet = saved_;
    quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    active_ = tcsetattr(STDIN_FILENO, TCSANOW, &quiet) == 0;
  }
  ~EchoOffScope() {
    if (active_) tcsetattr(STDIN_FILENO, TCSANOW, &saved_);
  }
  EchoOffScope(const EchoOffScope&) = delete;
  EchoOffScope& operator=(const EchoOffScope&) = delete;

 private:
  termios saved_ {};
  bool active_ = false;
};

// ------------------------------------------------------------------------------------------------ output

struct Style {
  bool color = false;
  std::string dim(const std::string& text) const { return color ? "\x1b[2m" + text + "\x1b[0m" : text; }
  std::string bold(const std::string& text) const { return color ? "\x1b[1m" + text + "\x1b[0m" : text; }
  // For libedit: '\1' brackets what takes no room on screen.
  std::string prompt(const std::string& text) const {
    return color ? "\1\x1b[1;32m\1" + text + "\1\x1b[0m\1" : text;
  }
};

void print_notice(const Style& style, const std::string& text) {
  std::fflush(stdout);
  fmt::print(stderr, "{}\n", style.dim("notice: " + text));
}

void print_error(const std::string& text) {
  std::fflush(stdout);
  fmt::print(stderr, "error: {}\n", text);
}

std::string finish_text(const ChatTurnStats& st, int n_predict) {
  if (st.finish_reason == "length") return fmt::format(" | stopped at -n {}", n_predict);
  if (st.finish_reason == "context") return " | stopped: the context is full";
  if (st.finish_reason == "interrupted") return " | stopped by Ctrl-C";
  return "";
}

std::string status_line(const ChatSession& session, const Scheduler& scheduler, const ChatTurnStats& st) {
  const CacheStats cache = scheduler.cache().stats();
  return fmt::format("[{} tokens, {:.1f} tokens/s | KV {}/{} blocks | prompt {} tokens: {} reused, {} prefilled{}]",
                     st.generated_tokens, per_second(st.generated_tokens, st.generation_seconds), cache.blocks_used,
                     cache.blocks_total, st.prompt_tokens, st.reused_tokens, st.prefilled_tokens,
                     finish_text(st, session.max_answer_tokens()));
}

std::string stats_text(const ChatSession& session, Scheduler& scheduler) {
  const ChatTurnStats& st = session.last_turn();
  std::string s;
  if (st.prompt_tokens == 0) {
    s += "this turn: no answer yet\n";
  } else {
    s += fmt::format("this turn: prompt {} tokens = {} reused from the KV cache + {} prefilled ({:.1f} tokens/s); "
                     "{} generated ({:.1f} tokens/s){}\n",
                     st.prompt_tokens, st.reused_tokens, st.prefilled_tokens,
                     per_second(st.prefilled_tokens, st.prefill_seconds), st.generated_tokens,
                     per_second(st.generated_tokens, st.generation_seconds),
                     finish_text(st, session.max_answer_tokens()));
  }
  s += fmt::format("conversation: {} messages, {} tokens in the KV cache, context {} tokens\n",
                   session.messages().size(), session.cached_tokens().size(), session.capacity());
  RunTimings timings;
  timings.prompt_tokens = st.prefilled_tokens;
  timings.prompt_seconds = st.prefill_seconds;
  timings.generated_tokens = st.generated_tokens;
  timings.generation_seconds = st.generation_seconds;
  timings.time_to_first_token = st.time_to_first_token;
  s += make_stats_report(scheduler.runner(), scheduler.cache().stats(), timings).to_text();
  return s;
}

// ------------------------------------------------------------------------------------------------ input

std::string_view trim(std::string_view text) {
  const auto first = text.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos) return {};
  const auto last = text.find_last_not_of(" \t\r\n");
  return text.substr(first, last - first + 1);
}

constexpr std::string_view kBlockQuote = "\"\"\"";

// One user entry: a line; lines ending in a backslash continue on the next; a line starting with """ opens a block
// that runs to a line ending with """.
InputLine read_entry(LineInput& input, const Style& style) {
  InputLine first = input.read_line(style.prompt("> "));
  if (first.kind != InputLine::Kind::text) return first;
  input.remember(first.text);
  auto read_more = [&]() {
    InputLine next = input.read_line(style.prompt("... "));
    if (next.kind == InputLine::Kind::text) input.remember(next.text);
    return next;
  };

  const std::string_view opening = trim(first.text);
  if (opening.substr(0, kBlockQuote.size()) == kBlockQuote) {
    std::string_view body = opening.substr(kBlockQuote.size());
    if (body.size() >= kBlockQuote.size() && body.substr(body.size() - kBlockQuote.size()) == kBlockQuote) {
      return {InputLine::Kind::text, std::string(body.substr(0, body.size() - kBlockQuote.size()))};
    }
    std::vector<std::string> lines;
    if (!body.empty()) lines.emplace_back(body);
    while (true) {
      InputLine next = read_more();
      if (next.kind == InputLine::Kind::cleared) return next;
      if (next.kind == InputLine::Kind::end) break;  // an unclosed block at the end of input still counts
      std::string_view line = next.text;
      const auto end = line.find_last_not_of(" \t");
      line = end == std::string_view::npos ? std::string_view{} : line.substr(0, end + 1);
      if (line.size() >= kBlockQuote.size() && line.substr(line.size() - kBlockQuote.size()) == kBlockQuote) {
        line.remove_suffix(kBlockQuote.size());
        if (!line.empty()) lines.emplace_back(line);
        break;
      }
      lines.push_back(next.text);
    }
    std::string text;
    for (size_t i = 0; i < lines.size(); ++i) text += (i > 0 ? "\n" : "") + lines[i];
    return {InputLine::Kind::text, std::move(text)};
  }

  std::string text = std::move(first.text);
  while (!text.empty() && text.back() == '\\') {
    text.back() = '\n';
    InputLine next = read_more();
    if (next.kind == InputLine::Kind::cleared) return next;
    if (next.kind == InputLine::Kind::end) break;
    text += next.text;
  }
  return {InputLine::Kind::text, std::move(text)};
}

// ------------------------------------------------------------------------------------------------ /set

double parse_number(std::string_view name, std::string_view value) {
  const std::string text(value);
  char* end = nullptr;
  errno = 0;
  const double number = std::strtod(text.c_str(), &end);
  if (text.empty() || end != text.c_str() + text.size() || errno == ERANGE || !std::isfinite(number)) {
    fail("/set {} '{}': not a number", name, value);
  }
  return number;
}

int64_t parse_integer(std::string_view name, std::string_view value) {
  int64_t number = 0;
  const auto [end, error] = std::from_chars(value.data(), value.data() + value.size(), number);
  if (value.empty() || error != std::errc() || end != value.data() + value.size()) {
    fail("/set {} '{}': not a whole number", name, value);
  }
  return number;
}

std::string sampling_summary(const ChatSession& session) {
  const SamplingParams& p = session.sampling();
  return fmt::format("temp {} | top_k {} | top_p {} | min_p {} | repeat_penalty {} | repeat_last_n {} | "
                     "frequency_penalty {} | presence_penalty {} | seed {} | n_predict {}",
                     p.temperature, p.top_k, p.top_p, p.min_p, p.repeat_penalty, p.repeat_last_n,
                     p.frequency_penalty, p.presence_penalty,
                     p.seed == kRandomSeed ? std::string("random") : std::to_string(p.seed),
                     session.max_answer_tokens());
}

constexpr std::string_view kSetNames =
    "temp, top_k, top_p, min_p, repeat_penalty, repeat_last_n, frequency_penalty, presence_penalty, seed, n_predict";

// Returns what to tell the user.
std::string set_parameter(ChatSession& session, std::string_view arguments) {
  arguments = trim(arguments);
  if (arguments.empty()) return sampling_summary(session) + "\n";
  const auto space = arguments.find_first_of(" \t");
  if (space == std::string_view::npos) fail("/set {}: give a value, e.g. /set temp 0.7", arguments);
  std::string name(arguments.substr(0, space));
  for (char& ch : name) ch = ch == '-' ? '_' : ch;
  const std::string_view value = trim(arguments.substr(space));

  SamplingParams p = session.sampling();
  if (name == "temp" || name == "temperature") {
    p.temperature = static_cast<float>(parse_number(name, value));
  } else if (name == "top_k") {
    const int64_t k = parse_integer(name, value);
    if (k < 0 || k > 1'000'000'000) fail("/set top_k {}: must be 0 (off) or a positive count", value);
    p.top_k = static_cast<int>(k);
  } else if (name == "top_p") {
    p.top_p = static_cast<float>(parse_number(name, value));
  } else if (name == "min_p") {
    p.min_p = static_cast<float>(parse_number(name, value));
  } else if (name == "repeat_penalty") {
    p.repeat_penalty = static_cast<float>(parse_number(name, value));
  } else if (name == "repeat_last_n") {
    const int64_t n = parse_integer(name, value);
    if (n < -1 || n > 1'000'000'000) fail("/set repeat_last_n {}: must be -1 (all), 0 (off) or a count", value);
    p.repeat_last_n = static_cast<int>(n);
  } else if (name == "frequency_penalty") {
    p.frequency_penalty = static_cast<float>(parse_number(name, value));
  } else if (name == "presence_penalty") {
    p.presence_penalty = static_cast<float>(parse_number(name, value));
  } else if (name == "seed") {
    const int64_t seed = parse_integer(name, value);
    if (seed < -1) fail("/set seed {}: use -1 for random, or a non-negative number", value);
    p.seed = seed == -1 ? kRandomSeed : static_cast<uint64_t>(seed);
  } else if (name == "n_predict" || name == "n") {
    const int64_t n = parse_integer(name, value);
    if (n == 0 || n < -1 || n > 1'000'000'000) fail("/set n_predict {}: must be positive, or -1 for no limit", value);
    session.set_max_answer_tokens(static_cast<int>(n));
    return fmt::format("n_predict = {}\n", n);
  } else {
    fail("/set: unknown parameter '{}' (known: {})", name, kSetNames);
  }
  try {
    session.set_sampling(p);
  } catch (const Error& e) {
    fail("/set {} {}: {}", name, value, e.what());
  }
  return fmt::format("{} = {}\n", name, value);
}

// ------------------------------------------------------------------------------------------------ files

void save_conversation(const ChatSession& session, const std::string& path) {
  if (path.empty()) fail("/save needs a file name");
  const std::string temporary = path + ".tmp";
  {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    if (!out) fail("{}: cannot write: {}", temporary, std::strerror(errno));
    out << session.to_json().dump(2) << '\n';
    out.close();
    if (!out) {
      std::remove(temporary.c_str());
      fail("{}: write error", temporary);
    }
  }
  // Written whole, then renamed: an interrupted save never leaves a truncated conversation under the real name.
  std::error_code ec;
  std::filesystem::rename(temporary, path, ec);
  if (ec) {
    std::remove(temporary.c_str());
    fail("{}: cannot write: {}", path, ec.message());
  }
}

std::vector<ChatMessage> load_conversation(const std::string& path) {
  if (path.empty()) fail("/load needs a file name");
  const std::string text = read_text_file(path);
  nlohmann::json conversation;
  try {
    conversation = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail("{}: not valid JSON: {}", path, e.what());
  }
  try {
    return ChatSession::messages_from_json(conversation);
  } catch (const Error& e) {
    fail("{}: {}", path, e.what());
  }
}

// ------------------------------------------------------------------------------------------------ template

ChosenChatTemplate choose_template(const ChatOptions& o, const Model& model, const Style& style) {
  ChosenChatTemplate chosen = choose_chat_template(o.chat_template, model.tokenizer->chat_template(),
                                                   model.config.traits->fallback_chat_template);
  if (!chosen.notice.empty()) print_notice(style, chosen.notice);
  return chosen;
}

// ------------------------------------------------------------------------------------------------ the loop

constexpr std::string_view kHelp = R"(Type a message and press Enter. End a line with \ to continue it on the next, or
open a block with """ and close it with """. Ctrl-C stops an answer (or clears the line); Ctrl-D quits.
  /help              this text
  /exit, /quit       quit
  /reset             forget the conversation (the system prompt stays)
  /system [TEXT]     set the system prompt (without TEXT: show it; /system - removes it)
  /regen             sample the last answer again (its prompt is reused from the KV cache)
  /stats             tokens reused and prefilled this turn; cache, time and bandwidth statistics
  /save FILE         write the conversation as JSON
  /load FILE         read a conversation written by /save (or a JSON array of {role, content})
  /set [NAME VALUE]  change a sampling parameter, e.g. /set temp 0.7 (without arguments: show them all)
  //text             send a message that starts with /
)";

class ChatLoop {
 public:
  ChatLoop(ChatSession& session, Scheduler& scheduler, LineInput& input, Style style, bool json)
      : session_(session), scheduler_(scheduler), input_(input), style_(style), json_(json) {}

  // Returns the number of inputs (messages or commands) that failed.
  int run() {
    while (true) {
      InputLine entry = read_entry(input_, style_);
      if (entry.kind == InputLine::Kind::end) {
        if (input_.interactive()) std::fputc('\n', stdout);
        return failures_;
      }
      if (entry.kind == InputLine::Kind::cleared) continue;
      const std::string_view text = trim(entry.text);
      if (text.empty()) continue;
      try {
        if (text.front() == '/' && text.substr(0, 2) != "//") {
          if (!command(text)) return failures_;
        } else {
          answer(text.front() == '/' ? std::string(text.substr(1)) : entry.text, /*regenerate=*/false);
        }
      } catch (const Error& e) {
        ++failures_;
        if (json_) {
          fmt::print("{}\n", nlohmann::json{{"error", e.what()}}.dump(-1, ' ', false,
                                                                      nlohmann::json::error_handler_t::replace));
        } else {
          print_error(e.what());
        }
      }
      std::fflush(stdout);
    }
  }

 private:
  // A command's answer: plain text on stdout, or with --json one {"command", "output"} line.
  void say(std::string_view command, const std::string& output) {
    if (json_) {
      fmt::print("{}\n", nlohmann::ordered_json{{"command", command}, {"output", output}}.dump(
                             -1, ' ', false, nlohmann::json::error_handler_t::replace));
    } else {
      fmt::print("{}", output);
    }
  }

  // false: quit.
  bool command(std::string_view line) {
    const auto space = line.find_first_of(" \t");
    const std::string_view name = line.substr(0, space);
    const std::string_view arguments = space == std::string_view::npos ? std::string_view{} : trim(line.substr(space));
    if (name == "/exit" || name == "/quit") return false;
    if (name == "/help") {
      say(name, std::string(kHelp));
    } else if (name == "/reset") {
      session_.reset();
      say(name, style_.dim("conversation cleared (the system prompt stays)") + "\n");
    } else if (name == "/system") {
      if (arguments.empty()) {
        const auto current = session_.system_prompt();
        say(name, (current ? *current : style_.dim("(no system prompt)")) + "\n");
      } else if (arguments == "-") {
        session_.set_system_prompt({});
        say(name, style_.dim("system prompt removed") + "\n");
      } else {
        session_.set_system_prompt(std::string(arguments));
        say(name, style_.dim("system prompt set; it applies from the next answer") + "\n");
      }
    } else if (name == "/regen") {
      answer({}, /*regenerate=*/true);
    } else if (name == "/stats") {
      say(name, stats_text(session_, scheduler_));
    } else if (name == "/save") {
      save_conversation(session_, std::string(arguments));
      say(name, style_.dim(fmt::format("saved {} messages to {}", session_.messages().size(), arguments)) + "\n");
    } else if (name == "/load") {
      session_.set_messages(load_conversation(std::string(arguments)));
      say(name, style_.dim(fmt::format("loaded {} messages from {}", session_.messages().size(), arguments)) + "\n");
    } else if (name == "/set") {
      say(name, set_parameter(session_, arguments));
    } else {
      fail("unknown command {} (/help lists the commands; start a message with // to send a leading /)", name);
    }
    return true;
  }

  void answer(const std::string& user_text, bool regenerate) {
    ChatEvents events;
    std::string text;
    events.on_text = [&](std::string_view piece) {
      if (json_) {
        text += piece;
        return;
      }
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
    };
    events.on_context_trim = [this](const ChatTurnStats& trim) {
      print_notice(style_, fmt::format("the conversation outgrew the context of {} tokens: dropped the oldest {} "
                                       "messages (never the system prompt); the remaining {} tokens are prefilled "
                                       "again from the first change", session_.capacity(), trim.dropped_messages,
                                       trim.prompt_tokens));
    };
    events.stop = &g_stop_generation;
    ChatTurnStats st;
    {
      EchoOffScope quiet(input_.interactive());
      GeneratingScope generating;
      st = regenerate ? session_.regenerate(events) : session_.reply(user_text, events);
    }
    if (json_) {
      const nlohmann::ordered_json record = {{"role", "assistant"},         {"content", text},
                                     {"finish_reason", st.finish_reason}, {"tokens", st.generated_tokens},
                                     {"prompt_tokens", st.prompt_tokens}, {"reused_tokens", st.reused_tokens}};
      fmt::print("{}\n", record.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    } else {
      if (st.finish_reason == "interrupted" && input_.interactive()) std::fputs("^C", stdout);
      std::fputc('\n', stdout);
    }
    std::fflush(stdout);
    fmt::print(stderr, "{}\n", style_.dim(status_line(session_, scheduler_, st)));
  }

  ChatSession& session_;
  Scheduler& scheduler_;
  LineInput& input_;
  Style style_;
  bool json_;
  int failures_ = 0;
};

void run_chat(const ChatOptions& o) {
  if (o.n_predict == 0 || o.n_predict < -1) {
    fail("-n {}: the most tokens per answer must be positive (or -1 for no limit)", o.n_predict);
  }
  if (o.batch_tokens < 1) fail("--batch-tokens {} must be positive", o.batch_tokens);
  const SamplingParams sampling = sampling_from_flags(o.generation);
  const RunnerConfig runner_config = runner_config_from_flags(o.generation);
  std::string system_prompt = o.system_prompt;
  if (!o.system_file.empty()) {
    system_prompt = read_text_file(o.system_file);
    while (!system_prompt.empty() && (system_prompt.back() == '\n' || system_prompt.back() == '\r')) {
      system_prompt.pop_back();
    }
  }

  const bool interactive = isatty(STDIN_FILENO) != 0;
  Style style;
  const char* term = std::getenv("TERM");
  style.color = !o.no_color && isatty(STDOUT_FILENO) != 0 && isatty(STDERR_FILENO) != 0 &&
                std::getenv("NO_COLOR") == nullptr && !(term != nullptr && std::string_view(term) == "dumb");

  const std::string model_path = o.generation.model_path.empty() ? default_model_path() : o.generation.model_path;
  auto model = Model::load(model_path);
  const Tokenizer& tokenizer = *model->tokenizer;
  const ChosenChatTemplate chosen = choose_template(o, *model, style);

  ModelRunner runner(*model, runner_config);
  SchedulerConfig scheduler_config;
  scheduler_config.max_seqs = 1;
  scheduler_config.max_batch_tokens = o.batch_tokens;
  Scheduler scheduler(runner, &tokenizer, scheduler_config);
  ChatSessionOptions session_options;
  session_options.template_source = chosen.source;
  const ChatTemplateInputs special = chat_template_inputs(tokenizer, nlohmann::ordered_json::array(), false);
  session_options.bos_token = special.bos_token;
  session_options.eos_token = special.eos_token;
  session_options.sampling = sampling;
  session_options.max_answer_tokens = o.n_predict;
  ChatSession session(scheduler, tokenizer, session_options);
  if (!system_prompt.empty()) session.set_system_prompt(system_prompt);

  std::unique_ptr<LineInput> input =
      interactive ? make_terminal_input(o.no_history ? std::string() : default_history_path())
                  : make_stream_input(std::cin);
  if (interactive) {
    fmt::print(stderr, "{}\n", style.dim(fmt::format(
                                   "pagedllm chat: {} | template: {} | context {} tokens | /help for commands, "
                                   "Ctrl-D to quit",
                                   std::filesystem::path(model_path).filename().string(), chosen.description,
                                   session.capacity())));
  }
  InterruptHandler interrupt_handler;
  const int failures = ChatLoop(session, scheduler, *input, style, o.json).run();
  // A script driving chat must see that something it sent failed, even when it reads only the exit status.
  if (failures > 0 && !interactive) fail("{} input{} failed (see the errors above)", failures, failures == 1 ? "" : "s");
}

}  // namespace

void add_chat_command(CLI::App& app) {
  add_subcommand_with_aliases(
      app, "chat",
      "Talk with the model in the terminal; the conversation stays in the KV cache. When stdin is not a terminal, "
      "each input line is one user turn (or a /command); --json frames each answer as one JSON line.",
      {{"-sys", "--system"}, {"-sysf", "--system-file"}}, [](CLI::App& parser) {
        auto o = std::make_shared<ChatOptions>();
        add_generation_flags(parser, o->generation);
        auto* system = parser.add_option("--system", o->system_prompt, "System prompt (also -sys TEXT)");
        auto* system_file = parser.add_option("--system-file", o->system_file, "Read the system prompt from a file "
                                                                               "(also -sysf FILE)");
        system->excludes(system_file);
        parser.add_option("--chat-template", o->chat_template, "Use a built-in chat format instead of the model's "
                                                               "own template (" + builtin_chat_template_list() + ")");
        parser.add_option("-n,--n-predict", o->n_predict, "Most tokens per answer (-1: until an end token or the "
                                                          "context is full)")->capture_default_str();
        parser.add_option("--batch-tokens", o->batch_tokens, "Prompt tokens per prefill forward")->capture_default_str();
        parser.add_flag("--no-color", o->no_color, "No colours or dim status lines (also when NO_COLOR is set)");
        parser.add_flag("--no-history", o->no_history, "Do not read or write ~/.cache/pagedllm/chat_history");
        parser.add_flag("--json", o->json, "One JSON object per line on stdout for each input: an answer "
                                           "{role, content, finish_reason, tokens, prompt_tokens, reused_tokens}, a "
                                           "command's {command, output}, or {error}");
        return [o] { run_chat(*o); };
      });
}

}  // namespace pagedllm::cli
