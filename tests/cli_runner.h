#pragma once
// Runs the built pagedllm binary with arguments and captures stdout, stderr and the exit code, for the tests
// that check the command line as a user sees it.
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace pagedllm::test {

struct CommandResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

inline std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) {
    if (c == '\'') q += "'\\''";
    else q += c;
  }
  return q + "'";
}

inline std::string slurp(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// `args` is appended to the binary path as is (quote with shell_quote where needed); `stdin_text` is piped in.
inline CommandResult run_pagedllm(const std::string& args, const std::string& stdin_text = "") {
  static int counter = 0;
  const auto dir = std::filesystem::temp_directory_path() /
                   ("pagedllm-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
  std::filesystem::create_directories(dir);
  const auto in_path = dir / "stdin", out_path = dir / "stdout", err_path = dir / "stderr";
  { std::ofstream(in_path, std::ios::binary) << stdin_text; }
  const std::string command = shell_quote(PAGEDLLM_BINARY) + " " + args + " <" + shell_quote(in_path.string()) +
                              " >" + shell_quote(out_path.string()) + " 2>" + shell_quote(err_path.string());
  const int status = std::system(command.c_str());
  CommandResult result;
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  result.out = slurp(out_path);
  result.err = slurp(err_path);
  std::filesystem::remove_all(dir);
  return result;
}

}  // namespace pagedllm::test
