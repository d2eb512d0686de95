#include "cli/line_input.h"

#include <histedit.h>
#include <signal.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

namespace pagedllm::cli {
namespace {

std::atomic<bool> g_window_resized{false};
extern "C" void on_window_resize(int) { g_window_resized.store(true); }

class TerminalInput final : public LineInput {
 public:
  explicit TerminalInput(std::string history_path) : history_path_(std::move(history_path)) {
    editor_ = el_init("pagedllm", stdin, stdout, stderr);
    history_ = history_init();
    HistEvent event;
    history(history_, &event, H_SETSIZE, 1000);
    history(history_, &event, H_SETUNIQUE, 1);
    if (!history_path_.empty()) history(history_, &event, H_LOAD, history_path_.c_str());  // absent: fine

    el_set(editor_, EL_CLIENTDATA, this);
    el_set(editor_, EL_EDITOR, "emacs");
    // '\1' brackets the invisible colour sequences so the editor measures the prompt's width right.
    el_set(editor_, EL_PROMPT_ESC, &TerminalInput::prompt_text, '\1');
    el_set(editor_, EL_HIST, history, history_);
    // Ctrl-C while typing abandons the line instead of killing the program: the terminal stops turning ^C into
    // SIGINT while the editor reads (it still does during an answer, where Ctrl-C stops the generation), and ^C
    // arrives as a key bound here.
    el_set(editor_, EL_SETTY, "-d", "-isig", nullptr);
    // The wide form: libedit keeps these pointers as they are, where the narrow form copies both strings and never
    // frees the copies (a leak LeakSanitizer reports at every exit).
    el_wset(editor_, EL_ADDFN, L"pagedllm-abandon-line", L"Abandon the line being typed", &TerminalInput::on_ctrl_c);
    el_set(editor_, EL_BIND, "^C", "pagedllm-abandon-line", nullptr);
    el_source(editor_, nullptr);  // the user's ~/.editrc, as every libedit program reads it

    struct sigaction action {};
    action.sa_handler = on_window_resize;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    sigaction(SIGWINCH, &action, &previous_winch_);
  }

  ~TerminalInput() override {
    sigaction(SIGWINCH, &previous_winch_, nullptr);
    el_end(editor_);
    history_end(history_);
  }

  InputLine read_line(const std::string& prompt) override {
    prompt_ = prompt;
    cleared_ = false;
    if (g_window_resized.exchange(false)) el_resize(editor_);
    int count = 0;
    const char* line = el_gets(editor_, &count);
    if (cleared_) return {InputLine::Kind::cleared, {}};
    if (line == nullptr || count <= 0) return {InputLine::Kind::end, {}};
    std::string text(line, static_cast<size_t>(count));
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
    return {InputLine::Kind::text, std::move(text)};
  }

  void remember(const std::string& line) override {
    if (line.empty()) return;
    HistEvent event;
    history(history_, &event, H_ENTER, line.c_str());
    if (!history_path_.empty()) history(history_, &event, H_SAVE, history_path_.c_str());
  }

  bool interactive() const override { return true; }

 private:
  static TerminalInput& self(EditLine* editor) {
    void* data = nullptr;
    el_get(editor, EL_CLIENTDATA, &data);
    return *static_cast<TerminalInput*>(data);
  }
  static char* prompt_text(EditLine* editor) { return self(editor).prompt_.data(); }
  // Shows "^C" at the end of the abandoned line and ends it the way Enter does (so the screen moves on to a fresh
  // prompt); read_line then discards what was typed.
  static unsigned char on_ctrl_c(EditLine* editor, int) {
    const LineInfo* line = el_line(editor);
    el_cursor(editor, static_cast<int>(line->lastchar - line->cursor));
    el_insertstr(editor, "^C");
    el_push(editor, "\n");
    self(editor).cleared_ = true;
    return CC_REFRESH;
  }

  std::string history_path_;
  EditLine* editor_ = nullptr;
  History* history_ = nullptr;
  std::string prompt_;
  bool cleared_ = false;
  struct sigaction previous_winch_ {};
};

class StreamInput final : public LineInput {
 public:
  explicit StreamInput(std::istream& in) : in_(in) {}
  InputLine read_line(const std::string&) override {
    std::string text;
    if (!std::getline(in_, text)) return {InputLine::Kind::end, {}};
    if (!text.empty() && text.back() == '\r') text.pop_back();
    return {InputLine::Kind::text, std::move(text)};
  }
  void remember(const std::string&) override {}
  bool interactive() const override { return false; }

 private:
  std::istream& in_;
};

}  // namespace

std::unique_ptr<LineInput> make_terminal_input(const std::string& history_path) {
  return std::make_unique<TerminalInput>(history_path);
}

std::unique_ptr<LineInput> make_stream_input(std::istream& in) { return std::make_unique<StreamInput>(in); }

std::string default_history_path() {
  const char* home = std::getenv("HOME");
  if (home == nullptr || *home == '\0') return {};
  const std::filesystem::path dir = std::filesystem::path(home) / ".cache" / "pagedllm";
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return {};
  return (dir / "chat_history").string();
}

}  // namespace pagedllm::cli
