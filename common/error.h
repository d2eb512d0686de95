#pragma once
// One exception type for every error a user can cause (bad file, bad flag, bad prompt line, too little memory).
// main() catches it, prints "error: <message>" once and exits non-zero; nothing below main prints errors itself.
#include <stdexcept>
#include <string>

#include <fmt/format.h>

namespace pagedllm {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

// An error with its own exit status: a run stopped by a signal exits 128 + the signal's number, as shells expect.
class ExitError : public Error {
 public:
  ExitError(const std::string& message, int exit_code) : Error(message), exit_code_(exit_code) {}
  int exit_code() const { return exit_code_; }

 private:
  int exit_code_;
};

template <typename... Args>
[[noreturn]] inline void fail(fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace pagedllm
