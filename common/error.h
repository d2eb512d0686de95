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

template <typename... Args>
[[noreturn]] inline void fail(fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace pagedllm
