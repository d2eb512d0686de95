#include "common/warning.h"

#include <cstdio>
#include <mutex>
#include <utility>

#include <fmt/format.h>

namespace pagedllm {
namespace {

std::mutex g_warning_mutex;
WarningHandler g_warning_handler;  // empty: print to stderr

}  // namespace

void warn(const std::string& message) {
  std::lock_guard<std::mutex> lock(g_warning_mutex);
  if (g_warning_handler) {
    g_warning_handler(message);
    return;
  }
  fmt::print(stderr, "warning: {}\n", message);
  std::fflush(stderr);
}

WarningHandler set_warning_handler(WarningHandler handler) {
  std::lock_guard<std::mutex> lock(g_warning_mutex);
  return std::exchange(g_warning_handler, std::move(handler));
}

}  // namespace pagedllm
