// `pagedllm tokenize`: show how a model's tokenizer splits a text, one token per line or as a list of ids.
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "cli/cli_support.h"
#include "cli/commands.h"
#include "common/error.h"
#include "model_loader/gguf.h"
#include "tokenizer/tokenizer.h"

namespace pagedllm::cli {
namespace {

struct TokenizeOptions {
  std::string model_path;
  std::string prompt;
  std::string prompt_file;
  bool has_text = false;  // -p or -f was given (-p "" is a valid, empty text)
  bool ids_only = false;
  bool no_bos = false;
  bool parse_special = false;
};

// A piece between single quotes with everything invisible made visible: C escapes for the usual control
// characters, \xNN for other control bytes and for bytes that are not part of a whole UTF-8 character (a byte
// token's half of an emoji). Whole non-ASCII characters are printed as they are.
std::string escape_piece(std::string_view piece) {
  std::string out;
  const auto* bytes = reinterpret_cast<const unsigned char*>(piece.data());
  size_t i = 0;
  while (i < piece.size()) {
    const unsigned char c = bytes[i];
    switch (c) {
      case '\n': out += "\\n"; ++i; continue;
      case '\r': out += "\\r"; ++i; continue;
      case '\t': out += "\\t"; ++i; continue;
      case '\\': out += "\\\\"; ++i; continue;
      case '\'': out += "\\'"; ++i; continue;
      default: break;
    }
    if (c < 0x20 || c == 0x7F) {
      out += fmt::format("\\x{:02x}", c);
      ++i;
      continue;
    }
    if (c < 0x80) {
      out += static_cast<char>(c);
      ++i;
      continue;
    }
    size_t length = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
    bool whole = length > 0 && i + length <= piece.size();
    for (size_t k = 1; whole && k < length; ++k) whole = (bytes[i + k] & 0xC0) == 0x80;
    if (whole) {
      out.append(piece.substr(i, length));
      i += length;
    } else {
      out += fmt::format("\\x{:02x}", c);
      ++i;
    }
  }
  return out;
}

void run_tokenize(const TokenizeOptions& options) {
  if (!options.has_text) fail("tokenize: give the text with -p TEXT or -f FILE");
  const std::string text = options.prompt_file.empty()
                               ? options.prompt
                               : read_text_file(options.prompt_file, kMaxPromptFileBytes, "a text file (-f)");
  const std::string model_path = options.model_path.empty() ? default_model_path() : options.model_path;
  const auto file = GgufFile::open(model_path);
  const auto tokenizer = Tokenizer::from_gguf(*file);
  const std::vector<int32_t> ids = tokenizer->encode(text, /*add_special=*/!options.no_bos, options.parse_special);
  std::string out;
  if (options.ids_only) {
    out = fmt::format("[{}]\n", fmt::join(ids, ", "));
  } else {
    for (int32_t id : ids) {
      out += fmt::format("{}\t'{}'\n", id, escape_piece(tokenizer->token_to_piece(id, /*render_special=*/true)));
    }
  }
  fmt::print("{}", out);
}

}  // namespace

void add_tokenize_command(CLI::App& app) {
  auto options = std::make_shared<TokenizeOptions>();
  CLI::App* cmd = app.add_subcommand("tokenize", "Show the tokens a model's tokenizer makes of a text");
  cmd->add_option("-m,--model", options->model_path,
                  "GGUF model file (default: the SmolLM2-135M-Instruct that scripts/setup.sh installs)");
  auto* prompt = cmd->add_option("-p,--prompt", options->prompt, "Text to tokenize");
  auto* file = cmd->add_option("-f,--file", options->prompt_file,
                               fmt::format("Read the text from a file (at most {})", byte_limit_text(kMaxPromptFileBytes)));
  prompt->excludes(file);
  cmd->add_flag("--ids", options->ids_only, "Print only the ids, as a list: [1, 2, 3]");
  cmd->add_flag("--no-bos", options->no_bos, "Do not add the model's BOS (or EOS) token");
  cmd->add_flag("--special", options->parse_special,
                "Parse control-token text (e.g. <|im_start|>) into its token instead of treating it as text");
  cmd->callback([options, prompt, file] {
    options->has_text = prompt->count() > 0 || file->count() > 0;
    run_tokenize(*options);
  });
}

}  // namespace pagedllm::cli
