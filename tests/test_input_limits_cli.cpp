// The limits on what one input may be (a prompt file, a template, a messages file, one line of a request file), as
// a user meets them: an input over its limit, or a directory given as a file, ends in one message naming the file
// and the limit, after reading no more than the limit (an endless /dev/zero included); an input at its limit works.
// Also the messages of the parsers behind these inputs: --messages given JSON text instead of a file, a number a
// request line cannot hold, and a chat template too expensive to run (in a file, and inside a model).
#include <doctest/doctest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <vector>

#include "cli/batch_files.h"
#include "model_loader/gguf.h"
#include "model_loader/gguf_writer.h"
#include "tests/cli_runner.h"

using pagedllm::test::run_pagedllm;
using pagedllm::test::shell_quote;

namespace {

const std::string kStories = PAGEDLLM_SHARED_DIR "/models/stories260K.gguf";
constexpr size_t kMiB = size_t{1} << 20;

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

std::filesystem::path scratch_dir(const std::string& name) {
  const auto dir = std::filesystem::temp_directory_path() /
                   ("pagedllm-limits-" + std::to_string(::getpid()) + "-" + name);
  std::filesystem::create_directories(dir);
  return dir;
}

void write_file(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  REQUIRE(out.good());
}

// A conversation of one user message whose JSON text is exactly `bytes` long.
std::string conversation_of_size(size_t bytes) {
  const std::string head = R"([{"role": "user", "content": ")";
  const std::string tail = R"("}])";
  REQUIRE(bytes > head.size() + tail.size());
  return head + std::string(bytes - head.size() - tail.size(), 'x') + tail;
}

// stories260K with its chat template replaced.
std::string stories_with_template(const std::filesystem::path& dir, const std::string& chat_template) {
  const std::string path = (dir / "stories-template.gguf").string();
  auto source = pagedllm::GgufFile::open(kStories);
  pagedllm::GgufWriter writer(source->version());
  for (const auto& [key, value] : source->metadata()) writer.set(key, value);
  writer.set_string("tokenizer.chat_template", chat_template);
  for (const pagedllm::GgufTensorInfo& t : source->tensors()) {
    writer.add_tensor(t.name, std::vector<int64_t>(t.ne, t.ne + t.n_dims), t.type,
                      std::span<const uint8_t>(t.data, t.n_bytes));
  }
  writer.write_file(path);
  return path;
}

// Two nested loops of 100000: 10^10 iterations, which ran 90 s before the step limit stopped them.
const std::string kEndlessTemplate =
    "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    "{% for m in messages %}{{ m.content }}{% endfor %}";

}  // namespace

TEST_CASE("inputs: a file that never ends is refused at its limit, naming the file and the limit") {
  const auto dir = scratch_dir("zero");
  write_file(dir / "conversation.json", R"([{"role": "user", "content": "Hi"}])");
  const std::string conversation = shell_quote((dir / "conversation.json").string());
  struct Case {
    std::string args;
    std::string limit;  // as the message words it
  };
  const Case cases[] = {
      {"run -m " + shell_quote(kStories) + " -f /dev/zero -n 1", "16 MiB, the limit for a prompt"},
      {"tokenize -m " + shell_quote(kStories) + " -f /dev/zero", "16 MiB, the limit for a text file (-f)"},
      {"template --chat-template chatml --messages /dev/zero", "16 MiB, the limit for a messages file (--messages)"},
      {"template --template-file /dev/zero --messages " + conversation,
       "1 MiB, the limit for a template file (--template-file)"},
      {"batch -m " + shell_quote(kStories) + " -i /dev/zero -o " + shell_quote((dir / "out.jsonl").string()),
       "line 1 is longer than 16 MiB, the limit for one request line"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.args);
    const auto r = run_pagedllm(c.args);
    CHECK(r.exit_code == 1);
    CHECK_MESSAGE(contains(r.err, "error: /dev/zero: "), r.err);
    CHECK_MESSAGE(contains(r.err, c.limit), r.err);
  }
  CHECK_FALSE(std::filesystem::exists(dir / "out.jsonl"));
  std::filesystem::remove_all(dir);
}

TEST_CASE("inputs: a file over its limit is refused, one at its limit is read") {
  const auto dir = scratch_dir("sizes");
  // A sparse file: 17 MiB that take no disk space.
  const auto sparse = dir / "sparse.txt";
  { std::ofstream(sparse, std::ios::binary) << "Once"; }
  std::filesystem::resize_file(sparse, 17 * kMiB);
  const auto r = run_pagedllm("run -m " + shell_quote(kStories) + " -f " + shell_quote(sparse.string()) + " -n 1");
  CHECK(r.exit_code == 1);
  CHECK_MESSAGE(contains(r.err, sparse.string() + ": larger than 16 MiB"), r.err);

  // A conversation of exactly 16 MiB renders; one byte more is refused.
  write_file(dir / "at-limit.json", conversation_of_size(16 * kMiB));
  write_file(dir / "over-limit.json", conversation_of_size(16 * kMiB + 1));
  const auto at_limit =
      run_pagedllm("template --chat-template chatml --messages " + shell_quote((dir / "at-limit.json").string()));
  CHECK_MESSAGE(at_limit.exit_code == 0, at_limit.err);
  CHECK(at_limit.out.size() > 16 * kMiB - 100);
  const auto over_limit =
      run_pagedllm("template --chat-template chatml --messages " + shell_quote((dir / "over-limit.json").string()));
  CHECK(over_limit.exit_code == 1);
  CHECK_MESSAGE(contains(over_limit.err, "over-limit.json: larger than 16 MiB, the limit for a messages file"),
                over_limit.err);

  // A template of exactly 1 MiB (a comment pads it) renders; one byte more is refused.
  const std::string body = "{{ messages[0]['content'][:2] }}";
  const std::string padding_open = "{#", padding_close = "#}";
  write_file(dir / "at-limit.jinja",
             body + padding_open + std::string(kMiB - body.size() - 4, '.') + padding_close);
  write_file(dir / "over-limit.jinja",
             body + padding_open + std::string(kMiB - body.size() - 3, '.') + padding_close);
  write_file(dir / "hi.json", R"([{"role": "user", "content": "Hi there"}])");
  const std::string hi = shell_quote((dir / "hi.json").string());
  const auto template_at_limit =
      run_pagedllm("template --template-file " + shell_quote((dir / "at-limit.jinja").string()) + " --messages " + hi);
  CHECK_MESSAGE(template_at_limit.exit_code == 0, template_at_limit.err);
  CHECK(template_at_limit.out == "Hi");
  const auto template_over_limit = run_pagedllm("template --template-file " +
                                                shell_quote((dir / "over-limit.jinja").string()) + " --messages " + hi);
  CHECK(template_over_limit.exit_code == 1);
  CHECK_MESSAGE(contains(template_over_limit.err, "larger than 1 MiB, the limit for a template file"),
                template_over_limit.err);

  // A request file whose second line is too long (a sparse tail of zero bytes): no output file is left.
  const auto requests = dir / "requests.jsonl";
  { std::ofstream(requests, std::ios::binary) << "{\"prompt\": \"Once\", \"max_tokens\": 1}\n"; }
  std::filesystem::resize_file(requests, 17 * kMiB);
  const auto batch = run_pagedllm("batch -m " + shell_quote(kStories) + " -i " + shell_quote(requests.string()) +
                                  " -o " + shell_quote((dir / "out.jsonl").string()) + " --progress off");
  CHECK(batch.exit_code == 1);
  CHECK_MESSAGE(contains(batch.err, "requests.jsonl: line 2 is longer than 16 MiB, the limit for one request line"),
                batch.err);
  CHECK_FALSE(std::filesystem::exists(dir / "out.jsonl"));
  std::filesystem::remove_all(dir);
}

TEST_CASE("inputs: a directory given as a file is an error, not an empty input") {
  const auto dir = scratch_dir("directory");
  const std::string d = shell_quote(dir.string());
  write_file(dir / "conversation.json", R"([{"role": "user", "content": "Hi"}])");
  const std::string conversation = shell_quote((dir / "conversation.json").string());
  for (const std::string& args : {"run -m " + shell_quote(kStories) + " -f " + d + " -n 1",
                                  "tokenize -m " + shell_quote(kStories) + " -f " + d,
                                  "template --chat-template chatml --messages " + d,
                                  "template --template-file " + d + " --messages " + conversation,
                                  "batch -m " + shell_quote(kStories) + " -i " + d + " -o " +
                                      shell_quote((dir / "out.jsonl").string())}) {
    CAPTURE(args);
    const auto r = run_pagedllm(args);
    CHECK(r.exit_code == 1);
    CHECK_MESSAGE(contains(r.err, dir.string() + ": is a directory"), r.err);
    CHECK(r.out.empty());
  }
  std::filesystem::remove_all(dir);
}

TEST_CASE("inputs: --help states each limit") {
  const auto run_help = run_pagedllm("run --help");
  CHECK_MESSAGE(contains(run_help.out, "Read the prompt from a file (at most 16 MiB)"), run_help.out);
  const auto tokenize_help = run_pagedllm("tokenize --help");
  CHECK_MESSAGE(contains(tokenize_help.out, "at most 16 MiB"), tokenize_help.out);
  const auto template_help = run_pagedllm("template --help");
  CHECK_MESSAGE(contains(template_help.out, "at most 1 MiB"), template_help.out);
  CHECK_MESSAGE(contains(template_help.out, "at most 16 MiB"), template_help.out);
  CHECK_MESSAGE(contains(template_help.out, "File holding the conversation"), template_help.out);
  const auto batch_help = run_pagedllm("batch --help");
  CHECK_MESSAGE(contains(batch_help.out, "a line may be at most 16 MiB"), batch_help.out);
}

TEST_CASE("template --messages takes a file or - for standard input, and says so when given JSON text") {
  const auto inline_json = run_pagedllm("template --chat-template chatml --messages " +
                                        shell_quote(R"([{"role": "user", "content": "Hi"}])"));
  CHECK(inline_json.exit_code == 1);
  CHECK_MESSAGE(contains(inline_json.err, "--messages takes a file name (or - for standard input), not the JSON"),
                inline_json.err);
  const auto from_stdin = run_pagedllm("template --chat-template chatml --messages -",
                                       R"([{"role": "user", "content": "Hi"}])");
  CHECK_MESSAGE(from_stdin.exit_code == 0, from_stdin.err);
  CHECK(from_stdin.out == "<|im_start|>user\nHi<|im_end|>\n");
  const auto too_much_stdin =
      run_pagedllm("template --chat-template chatml --messages -", conversation_of_size(16 * kMiB + 1));
  CHECK(too_much_stdin.exit_code == 1);
  CHECK_MESSAGE(contains(too_much_stdin.err, "standard input: larger than 16 MiB"), too_much_stdin.err);
}

TEST_CASE("batch: a number a request cannot hold is reported by its field, not as a JSON library error") {
  const pagedllm::RequestLine temperature =
      pagedllm::parse_request_line(R"({"prompt": "x", "temperature": 1e999})", 7);
  CHECK(temperature.error == "\"temperature\": the number 1e999 is out of range (it does not fit in a double)");
  // The error record keeps the id the line gave before the number (it used to fall back to the line number, which
  // could be another request's id).
  CHECK(temperature.id == 7);
  const pagedllm::RequestLine with_id =
      pagedllm::parse_request_line(R"({"id": "first", "prompt": "x", "temperature": 1e999})", 3);
  CHECK(with_id.id == "first");
  CHECK_FALSE(with_id.error.empty());
  const pagedllm::RequestLine numbered =
      pagedllm::parse_request_line(R"({"id": 1, "messages": [{"id": 5, "x": 1e999}]})", 2);
  CHECK(numbered.id == 1);
  const pagedllm::RequestLine nested = pagedllm::parse_request_line(
      R"({"messages": [{"role": "user", "content": "x", "weight": -1e400}]})", 8);
  CHECK(nested.error == "\"messages.weight\": the number -1e400 is out of range (it does not fit in a double)");

  const auto dir = scratch_dir("number");
  write_file(dir / "requests.jsonl", "{\"prompt\": \"Once\", \"max_tokens\": 2}\n"
                                     "{\"prompt\": \"Once\", \"temperature\": 1e999}\n");
  const auto r = run_pagedllm("batch -m " + shell_quote(kStories) + " -i " +
                              shell_quote((dir / "requests.jsonl").string()) + " -o " +
                              shell_quote((dir / "out.jsonl").string()) + " --progress off -t 1");
  CHECK_MESSAGE(r.exit_code == 0, r.err);
  const std::string records = pagedllm::test::slurp(dir / "out.jsonl");
  CHECK_MESSAGE(contains(records, R"("error":"line 2: \"temperature\": the number 1e999 is out of range)"), records);
  CHECK_FALSE(contains(records + r.err, "json.exception"));
  std::filesystem::remove_all(dir);
}

TEST_CASE("a chat template too expensive to run ends within about a second: an error for template, chatml for run") {
  const auto dir = scratch_dir("expensive");
  write_file(dir / "endless.jinja", kEndlessTemplate);
  write_file(dir / "hi.json", R"([{"role": "user", "content": "Hi"}])");
  const std::string hi = shell_quote((dir / "hi.json").string());

  const auto from_file =
      run_pagedllm("template --template-file " + shell_quote((dir / "endless.jinja").string()) + " --messages " + hi);
  CHECK(from_file.exit_code == 1);
  CHECK_MESSAGE(contains(from_file.err, "the template is too expensive"), from_file.err);

  const std::string model = stories_with_template(dir, kEndlessTemplate);
  const auto from_model = run_pagedllm("template -m " + shell_quote(model) + " --messages " + hi);
  CHECK(from_model.exit_code == 1);
  CHECK_MESSAGE(contains(from_model.err, "the template is too expensive"), from_model.err);

  // Generating commands fall back to chatml with a notice, as for any template that cannot be used.
  const auto chat_run = run_pagedllm("run -m " + shell_quote(model) + " --chat -p Hi -n 2 --temp 0 -t 1");
  CHECK_MESSAGE(chat_run.exit_code == 0, chat_run.err);
  CHECK_MESSAGE(contains(chat_run.err, "the template is too expensive"), chat_run.err);
  CHECK_MESSAGE(contains(chat_run.err, "using the built-in chatml format"), chat_run.err);
  std::filesystem::remove_all(dir);
}
