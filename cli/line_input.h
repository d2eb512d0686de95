#pragma once
// Where chat's input lines come from: a terminal (libedit: line editing, history kept in a file, Ctrl-C clears
// the line being typed) or a plain stream such as a pipe (one line at a time, nothing echoed).
#include <istream>
#include <memory>
#include <string>

namespace pagedllm::cli {

struct InputLine {
  enum class Kind {
    text,     // a line was entered (without its newline)
    cleared,  // Ctrl-C at the prompt: the line was abandoned
    end,      // end of input (Ctrl-D on an empty line, or the stream ended)
  };
  Kind kind = Kind::end;
  std::string text;
};

class LineInput {
 public:
  virtual ~LineInput() = default;
  // `prompt` may hold ANSI colour sequences; a stream input does not show it.
  virtual InputLine read_line(const std::string& prompt) = 0;
  // Adds an entered line to the history (saved at once, so a crash loses nothing). No-op for streams.
  virtual void remember(const std::string& line) = 0;
  virtual bool interactive() const = 0;
};

// libedit on the process's terminal. `history_path` empty: no history file. A history file that cannot be read or
// written is skipped silently: history is a convenience, never a reason to fail.
std::unique_ptr<LineInput> make_terminal_input(const std::string& history_path);
std::unique_ptr<LineInput> make_stream_input(std::istream& in);

// $HOME/.cache/pagedllm/chat_history ("" when HOME is unset); creates the directory when it can.
std::string default_history_path();

}  // namespace pagedllm::cli
