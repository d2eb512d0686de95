#pragma once
// Runs the built pagedllm binary with arguments and captures stdout, stderr and the exit code, for the tests
// that check the command line as a user sees it.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

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
// `env`, when given, is what env(1) takes before the command: "-u XDG_CACHE_HOME HOME='/tmp/x' NAME=value".
inline CommandResult run_pagedllm_env(const std::string& env, const std::string& args,
                                      const std::string& stdin_text = "") {
  static int counter = 0;
  const auto dir = std::filesystem::temp_directory_path() /
                   ("pagedllm-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
  std::filesystem::create_directories(dir);
  const auto in_path = dir / "stdin", out_path = dir / "stdout", err_path = dir / "stderr";
  { std::ofstream(in_path, std::ios::binary) << stdin_text; }
  const std::string command = (env.empty() ? "" : "env " + env + " ") + shell_quote(PAGEDLLM_BINARY) + " " + args +
                              " <" + shell_quote(in_path.string()) +
                              " >" + shell_quote(out_path.string()) + " 2>" + shell_quote(err_path.string());
  const int status = std::system(command.c_str());
  CommandResult result;
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  result.out = slurp(out_path);
  result.err = slurp(err_path);
  std::filesystem::remove_all(dir);
  return result;
}

inline CommandResult run_pagedllm(const std::string& args, const std::string& stdin_text = "") {
  return run_pagedllm_env("", args, stdin_text);
}

// The JSON object on the last non-empty line of `text` (where --stats json puts its report).
// Starts args (args[0] is the program; stdout and stderr to /dev/null; no job-scheduler shard variables), waits
// until `watched` holds `lines` lines, then sends `signal_number`: an interruption at a known point of the output,
// not a hand-made file. Returns the wait status (the program may also have ended by itself, or after 120 s).
inline int run_until_lines_then_signal(std::vector<std::string> args, const std::string& watched, long lines,
                                       int signal_number) {
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    for (const char* name : {"SLURM_ARRAY_TASK_ID", "JOB_COMPLETION_INDEX"}) ::unsetenv(name);
    const int devnull = ::open("/dev/null", O_WRONLY);
    ::dup2(devnull, STDOUT_FILENO);
    ::dup2(devnull, STDERR_FILENO);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  auto lines_out = [&] {
    const std::string text = slurp(watched);
    return static_cast<long>(std::count(text.begin(), text.end(), '\n'));
  };
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  int status = 0;
  while (lines_out() < lines && std::chrono::steady_clock::now() < deadline) {
    if (::waitpid(pid, &status, WNOHANG) == pid) return status;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  ::kill(pid, signal_number);
  ::waitpid(pid, &status, 0);
  return status;
}

inline nlohmann::json last_json_object(const std::string& text) {
  const auto end = text.find_last_not_of('\n');
  if (end == std::string::npos) return nlohmann::json();
  const auto newline = text.rfind('\n', end);
  const auto begin = newline == std::string::npos ? 0 : newline + 1;
  return nlohmann::json::parse(text.substr(begin, end + 1 - begin), nullptr, /*allow_exceptions=*/false);
}

// Bytes one token takes in the K/V cache, worked out from the model's shape as `pagedllm info --json` reports it:
// a K and a V row in every layer, n_head_kv heads of head_dim elements of `element_bytes` each.
inline int64_t kv_bytes_per_token(const std::string& model, int element_bytes) {
  const CommandResult info = run_pagedllm("info -m " + shell_quote(model) + " --json");
  if (info.exit_code != 0) return -1;
  const nlohmann::json config = nlohmann::json::parse(info.out)["config"];
  return 2 * config["n_layer"].get<int64_t>() * config["n_head_kv"].get<int64_t>() *
         config["head_dim"].get<int64_t>() * element_bytes;
}

}  // namespace pagedllm::test
