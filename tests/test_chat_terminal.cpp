// `pagedllm chat` at a real terminal, as a person uses it: tmux runs it in a pseudo-terminal, the test types keys
// and reads the screen. Two turns with SmolLM2 (the answer streams), Ctrl-C in the middle of an answer returns to
// the prompt, Ctrl-C at the prompt abandons the line, the Up arrow recalls history, /regen reuses the cached prompt,
// /stats shows it, /exit quits with code 0. Colours show unless --no-color or NO_COLOR, and the lines typed go to
// the history file unless --no-history.
#include <doctest/doctest.h>

#include "required_files.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "tests/cli_runner.h"

using pagedllm::test::shell_quote;

namespace {

const std::string kSmol = PAGEDLLM_SOURCE_DIR "/models/SmolLM2-135M-Instruct.Q4_1.gguf";

// One private tmux server (its own socket), killed at the end. Each terminal gets a socket of its own: a new
// server on the socket of one still shutting down could go down with it.
class Terminal {
 public:
  explicit Terminal(const std::string& command)
      : socket_("pagedllm-chat-test-" + std::to_string(::getpid()) + "-" + std::to_string(instances_++)) {
    tmux("new-session -d -x 160 -y 60 " + shell_quote(command));
  }
  ~Terminal() { tmux("kill-server"); }

  void keys(const std::string& keys) { tmux("send-keys " + keys); }
  void type(const std::string& text) { tmux("send-keys -l " + shell_quote(text)); }

  // The screen and its scrollback, wrapped lines joined; with `styles`, each cell's colours and attributes as the
  // escape sequences that set them.
  std::string screen(bool styles = false) const {
    const std::string command =
        "tmux -L " + socket_ + " capture-pane -p -J -S -500" + (styles ? " -e" : "") + " 2>/dev/null";
    std::string text;
    if (FILE* pipe = ::popen(command.c_str(), "r")) {
      char buffer[4096];
      size_t n;
      while ((n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0) text.append(buffer, n);
      ::pclose(pipe);
    }
    return text;
  }

  // Polls the screen until `done` holds; false after `seconds`.
  bool wait_for(const std::function<bool(const std::string&)>& done, double seconds = 180) const {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    while (std::chrono::steady_clock::now() < deadline) {
      if (done(screen())) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(150));
    }
    return false;
  }
  bool wait_for_text(const std::string& text, double seconds = 180) const {
    return wait_for([&](const std::string& s) { return s.find(text) != std::string::npos; }, seconds);
  }

 private:
  int tmux(const std::string& arguments) const {
    return std::system(("tmux -L " + socket_ + " " + arguments + " >/dev/null 2>&1").c_str());
  }
  static inline int instances_ = 0;
  std::string socket_;
};

int count(const std::string& text, const std::regex& pattern) {
  return static_cast<int>(std::distance(std::sregex_iterator(text.begin(), text.end(), pattern),
                                        std::sregex_iterator()));
}

const std::regex kStatus(R"(\[\d+ tokens, [0-9.]+ tokens/s \| KV \d+/\d+ blocks \| prompt (\d+) tokens: (\d+) reused)");

// The last line that starts with the prompt "> ", without trailing spaces.
std::string last_prompt_line(const std::string& screen) {
  std::string last;
  size_t start = 0;
  while (start < screen.size()) {
    size_t end = screen.find('\n', start);
    if (end == std::string::npos) end = screen.size();
    std::string line = screen.substr(start, end - start);
    line.erase(line.find_last_not_of(' ') + 1);  // capture-pane -J keeps trailing spaces
    if (line.rfind(">", 0) == 0) last = line;
    start = end + 1;
  }
  return last;
}

}  // namespace

TEST_CASE("chat in a terminal: streaming, Ctrl-C stops an answer or abandons a line, history, /regen, /stats, /exit") {
  pagedllm::test::require_program("tmux", "scripts/setup.sh installs it (apt-get install tmux)");
  pagedllm::test::require_smollm2();
  const auto home = std::filesystem::temp_directory_path() / ("pagedllm-chat-home-" + std::to_string(::getpid()));
  std::filesystem::remove_all(home);
  std::filesystem::create_directories(home);
  const std::string command = "HOME=" + shell_quote(home.string()) + " " + shell_quote(PAGEDLLM_BINARY) +
                              " chat -m " + shell_quote(kSmol) + " --temp 0 -n 400 -c 2048; echo \"[exit code $?]\"; "
                              "sleep 600";
  Terminal term(command);
  REQUIRE_MESSAGE(term.wait_for([](const std::string& s) { return last_prompt_line(s) == ">"; }),
                  "no prompt appeared:\n" << term.screen());

  // Turn 1.
  term.type("What is the capital of France?");
  term.keys("Enter");
  REQUIRE_MESSAGE(term.wait_for([](const std::string& s) { return count(s, kStatus) == 1; }), term.screen());
  CHECK(term.wait_for([](const std::string& s) { return last_prompt_line(s) == ">"; }));

  // Turn 2: a long answer, watched while it streams, stopped with Ctrl-C.
  term.type("Tell me a long story about a dragon.");
  term.keys("Enter");
  auto answer_length = [](const std::string& s) -> size_t {
    const auto question = s.find("> Tell me a long story about a dragon.");
    return question == std::string::npos ? 0 : s.size() - question;
  };
  const size_t question_only = std::string("> Tell me a long story about a dragon.\n").size();
  REQUIRE_MESSAGE(term.wait_for([&](const std::string& s) { return answer_length(s) > question_only + 40; }),
                  term.screen());
  const std::string early = term.screen();
  CHECK(count(early, kStatus) == 1);  // still answering...
  // ...and growing.
  CHECK(term.wait_for([&](const std::string& s) { return answer_length(s) > answer_length(early) + 10; }));
  term.keys("C-c");
  REQUIRE_MESSAGE(term.wait_for_text("stopped by Ctrl-C", 60), term.screen());
  CHECK(term.wait_for([](const std::string& s) { return last_prompt_line(s) == ">"; }));
  CHECK(count(term.screen(), kStatus) == 2);

  // Ctrl-C at the prompt abandons the line: no answer follows.
  term.type("a draft I do not want");
  term.keys("C-c");
  CHECK(term.wait_for_text("> a draft I do not want^C"));
  CHECK(term.wait_for([](const std::string& s) { return last_prompt_line(s) == ">"; }));

  // The Up arrow brings back the last line entered (the abandoned one is not in the history).
  term.keys("Up");
  CHECK(term.wait_for(
      [](const std::string& s) { return last_prompt_line(s) == "> Tell me a long story about a dragon."; }));
  term.keys("C-c");
  CHECK(term.wait_for([](const std::string& s) { return last_prompt_line(s) == ">"; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  CHECK(count(term.screen(), kStatus) == 2);

  // /regen resamples the stopped answer from the cached prompt: all but its last token reused.
  term.type("/set n_predict 12");
  term.keys("Enter");
  CHECK(term.wait_for_text("n_predict = 12"));
  term.type("/regen");
  term.keys("Enter");
  REQUIRE_MESSAGE(term.wait_for([](const std::string& s) { return count(s, kStatus) == 3; }), term.screen());
  const std::string after_regen = term.screen();
  std::smatch last;
  for (auto it = std::sregex_iterator(after_regen.begin(), after_regen.end(), kStatus); it != std::sregex_iterator();
       ++it) {
    last = *it;
  }
  REQUIRE(last.size() == 3);
  CHECK(std::stoi(last[2]) == std::stoi(last[1]) - 1);

  term.type("/stats");
  term.keys("Enter");
  CHECK(term.wait_for_text("reused from the KV cache + 1 prefilled"));
  CHECK(term.wait_for_text("bandwidth:"));

  term.type("/exit");
  term.keys("Enter");
  CHECK_MESSAGE(term.wait_for_text("[exit code 0]", 30), term.screen());
  std::filesystem::remove_all(home);
}

TEST_CASE("chat in a terminal: colours unless --no-color or NO_COLOR; typed lines kept in ~/.cache/pagedllm/chat_history "
          "(mode 0600) unless --no-history") {
  pagedllm::test::require_program("tmux", "scripts/setup.sh installs it (apt-get install tmux)");
  const auto home = std::filesystem::temp_directory_path() / ("pagedllm-chat-home-" + std::to_string(::getpid()));
  std::filesystem::remove_all(home);
  std::filesystem::create_directories(home);
  const auto history = home / ".cache" / "pagedllm" / "chat_history";
  const std::string stories = PAGEDLLM_SHARED_DIR "/models/stories260K.gguf";
  // One session: `env_and_flags` around the command, `line` typed and answered, `before` done at the first prompt.
  auto session = [&](const std::string& env, const std::string& flags, const std::string& line,
                     const std::function<void(Terminal&)>& before = {}) {
    const std::string command = "env -u NO_COLOR HOME=" + shell_quote(home.string()) + " " + env + " " +
                                shell_quote(PAGEDLLM_BINARY) + " chat -m " + shell_quote(stories) +
                                " --temp 0 -n 4 -c 256 " + flags + "; echo \"[exit code $?]\"; sleep 600";
    Terminal term(command);
    REQUIRE_MESSAGE(term.wait_for([](const std::string& s) { return last_prompt_line(s) == ">"; }),
                    "no prompt appeared:\n" << term.screen());
    if (before) before(term);
    term.type(line);
    term.keys("Enter");
    REQUIRE_MESSAGE(term.wait_for([](const std::string& s) { return count(s, kStatus) == 1; }), term.screen());
    term.type("/exit");
    term.keys("Enter");
    REQUIRE_MESSAGE(term.wait_for_text("[exit code 0]", 30), term.screen());
    return term.screen(/*styles=*/true);
  };
  auto history_lines = [&] {
    std::vector<std::string> lines;
    std::ifstream in(history);
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    return lines;
  };

  // By default: colours, and the lines typed saved in a file only its owner can read.
  const std::string coloured = session("", "", "Hello");
  CHECK_MESSAGE(coloured.find("\x1b[") != std::string::npos, coloured);
  REQUIRE(std::filesystem::exists(history));
  CHECK((std::filesystem::status(history).permissions() & std::filesystem::perms::all) ==
        (std::filesystem::perms::owner_read | std::filesystem::perms::owner_write));
  std::vector<std::string> lines = history_lines();
  CHECK(std::find(lines.begin(), lines.end(), "Hello") != lines.end());
  CHECK(std::find(lines.begin(), lines.end(), "/exit") != lines.end());
  const std::string saved = pagedllm::test::slurp(history.string());

  // --no-color and --no-history: no escape sequence on the screen, the Up arrow finds nothing, the file is untouched.
  const std::string plain = session("", "--no-color --no-history", "Lily", [](Terminal& term) {
    term.keys("Up");
    term.type("x");  // shows once the Up arrow has been handled: alone, or after a recalled line
    std::string line;
    CHECK(term.wait_for([&](const std::string& s) { return (line = last_prompt_line(s)).ends_with("x"); }, 30));
    CHECK(line == "> x");
    term.keys("C-c");
    CHECK(term.wait_for([](const std::string& s) { return last_prompt_line(s) == ">"; }, 30));
  });
  CHECK_MESSAGE(plain.find('\x1b') == std::string::npos, plain);
  CHECK(pagedllm::test::slurp(history.string()) == saved);

  // NO_COLOR: no colours either; the history is read (Up recalls the last line of the first session) and grows.
  const std::string no_color = session("NO_COLOR=1", "", "Tom", [](Terminal& term) {
    term.keys("Up");
    CHECK(term.wait_for([](const std::string& s) { return last_prompt_line(s) == "> /exit"; }, 30));
    term.keys("C-c");
    CHECK(term.wait_for([](const std::string& s) { return last_prompt_line(s) == ">"; }, 30));
  });
  CHECK_MESSAGE(no_color.find('\x1b') == std::string::npos, no_color);
  lines = history_lines();
  CHECK(std::find(lines.begin(), lines.end(), "Tom") != lines.end());
  CHECK(std::find(lines.begin(), lines.end(), "Lily") == lines.end());
  std::filesystem::remove_all(home);
}
