#pragma once
// Problems that were worked around rather than refused: a file's value replaced by its default, as llama.cpp does
// with a warning. Each is printed to stderr as "warning: <message>" unless a handler collects them instead (tests,
// or a command that shows them its own way).
#include <functional>
#include <string>

namespace pagedllm {

using WarningHandler = std::function<void(const std::string& message)>;

void warn(const std::string& message);

// Installs `handler` (an empty one restores printing to stderr) and returns the one it replaces.
WarningHandler set_warning_handler(WarningHandler handler);

}  // namespace pagedllm
