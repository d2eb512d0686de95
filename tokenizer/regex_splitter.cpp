// PCRE2-backed word splitter for the pre-tokenizer regexes without a hand-written splitter. It reproduces how
// llama.cpp runs them: a regex with \p{..} classes runs on the text collapsed to one byte per
// code point, anything else on the code points with non-ASCII whitespace turned into 0x0B. Both corner cases
// (e.g. '~' is not \p{S}; U+3000 is matched by \s but no longer by a class range that contains it) follow from
// running the same rewritten regex on the same rewritten text.
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>

#include "common/error.h"
#include "common/unicode.h"
#include "tokenizer/word_splitter.h"

namespace pagedllm {

const std::string& SplitInput::collapsed() {
  if (!have_collapsed_) {
    const uint8_t* flags = unicode::flag_table();
    collapsed_.resize(codepoints_.size());
    for (size_t i = 0; i < codepoints_.size(); ++i) {
      const uint32_t cp = codepoints_[i];
      uint8_t byte = 0xD0;
      if (cp < 0x80) {
        byte = static_cast<uint8_t>(cp);
      } else {
        const unicode::CodepointFlags f(cp < unicode::kCodepointCount ? flags[cp] : uint8_t{0});
        if (f.is_whitespace()) {
          byte = 0x0B;
        } else {
          switch (f.category()) {
            case unicode::Category::Number: byte = 0xD1; break;
            case unicode::Category::Letter: byte = 0xD2; break;
            case unicode::Category::Punctuation: byte = 0xD3; break;
            case unicode::Category::Mark: byte = 0xD4; break;
            case unicode::Category::Symbol: byte = 0xD5; break;
            default: byte = 0xD0; break;
          }
        }
      }
      collapsed_[i] = static_cast<char>(byte);
    }
    have_collapsed_ = true;
  }
  return collapsed_;
}

const std::string& SplitInput::utf8() {
  if (!have_utf8_) {
    utf8_.clear();
    utf8_.reserve(codepoints_.size() + codepoints_.size() / 2);
    utf8_offsets_.resize(codepoints_.size() + 1);
    for (size_t i = 0; i < codepoints_.size(); ++i) {
      utf8_offsets_[i] = static_cast<uint32_t>(utf8_.size());
      uint32_t cp = codepoints_[i];
      if (cp >= 0x80 && unicode::flags_of(cp).is_whitespace()) cp = 0x0B;
      if (cp >= 0xD800 && cp <= 0xDFFF) cp = unicode::kReplacementCharacter;
      unicode::append_utf8(utf8_, cp);
    }
    utf8_offsets_[codepoints_.size()] = static_cast<uint32_t>(utf8_.size());
    have_utf8_ = true;
  }
  return utf8_;
}

const std::vector<uint32_t>& SplitInput::utf8_offsets() {
  utf8();
  return utf8_offsets_;
}

namespace {

// The ASCII members of each class in collapsed mode, as llama.cpp defines them (note: no '~' in \p{S}).
std::string_view ascii_members(char category) {
  switch (category) {
    case 'N': return "0-9";
    case 'L': return "A-Za-z";
    case 'P': return "!-#%-*,-/:-;?-@\\[-\\]_{}";
    case 'M': return "";
    case 'S': return "\\$\\+<=>\\^`\\|";
    default: return {};
  }
}

char marker_byte(char category) {
  switch (category) {
    case 'N': return static_cast<char>(0xD1);
    case 'L': return static_cast<char>(0xD2);
    case 'P': return static_cast<char>(0xD3);
    case 'M': return static_cast<char>(0xD4);
    default: return static_cast<char>(0xD5);  // 'S'
  }
}

bool is_collapsible_class(std::string_view regex, size_t i) {
  return regex[i] == '\\' && i + 4 < regex.size() && regex[i + 1] == 'p' && regex[i + 2] == '{' &&
         regex[i + 4] == '}' && std::string_view("NLPMS").find(regex[i + 3]) != std::string_view::npos;
}

bool uses_category_classes(std::string_view regex) {
  for (size_t i = 0; i < regex.size(); ++i) {
    if (is_collapsible_class(regex, i)) return true;
  }
  return false;
}

// Rewrites \p{X} into [marker + ASCII members], or splices the members into an enclosing [...] (which cannot
// nest). Brackets count as literal when preceded by a backslash, as in llama.cpp's rewrite.
std::string collapse_regex(std::string_view regex) {
  std::string out;
  bool in_class = false;
  for (size_t i = 0; i < regex.size(); ++i) {
    const char c = regex[i];
    if (c == '[' && (i == 0 || regex[i - 1] != '\\')) {
      out += '[';
      in_class = true;
      continue;
    }
    if (in_class && c == ']' && regex[i - 1] != '\\') {
      out += ']';
      in_class = false;
      continue;
    }
    if (is_collapsible_class(regex, i)) {
      const char category = regex[i + 3];
      if (!in_class) out += '[';
      out += marker_byte(category);
      out += ascii_members(category);
      if (!in_class) out += ']';
      i += 4;
      continue;
    }
    out += c;
  }
  return out;
}

// Per-thread match state: match data and a JIT stack that may grow large for long runs of one class.
struct MatchScratch {
  pcre2_match_data* match_data = nullptr;
  pcre2_match_context* match_context = nullptr;
  pcre2_jit_stack* jit_stack = nullptr;

  MatchScratch() {
    match_data = pcre2_match_data_create(32, nullptr);
    match_context = pcre2_match_context_create(nullptr);
    jit_stack = pcre2_jit_stack_create(64 * 1024, 256 * 1024 * 1024, nullptr);
    if (match_context && jit_stack) pcre2_jit_stack_assign(match_context, nullptr, jit_stack);
  }
  ~MatchScratch() {
    pcre2_jit_stack_free(jit_stack);
    pcre2_match_context_free(match_context);
    pcre2_match_data_free(match_data);
  }
  MatchScratch(const MatchScratch&) = delete;
  MatchScratch& operator=(const MatchScratch&) = delete;
};

MatchScratch& thread_scratch() {
  thread_local MatchScratch scratch;
  return scratch;
}

std::string pcre2_message(int code) {
  PCRE2_UCHAR buffer[256];
  if (pcre2_get_error_message(code, buffer, sizeof(buffer)) < 0) return "error " + std::to_string(code);
  return std::string(reinterpret_cast<const char*>(buffer));
}

class RegexSplitter final : public WordSplitter {
 public:
  explicit RegexSplitter(std::string_view regex) : regex_(regex) {
    collapsed_ = uses_category_classes(regex);
    std::string pattern;
    uint32_t options = PCRE2_DOLLAR_ENDONLY;  // ECMAScript '$' (llama.cpp's std::regex) is the subject end only
    if (collapsed_) {
      for (char c : regex) {
        if (static_cast<unsigned char>(c) >= 0x80) {
          fail("pre-tokenizer regex '{}' mixes Unicode classes and non-ASCII characters (not supported)", regex);
        }
      }
      pattern = collapse_regex(regex);
    } else {
      pattern = std::string(regex);
      options |= PCRE2_UTF;
    }
    int error_code = 0;
    PCRE2_SIZE error_offset = 0;
    code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), options, &error_code,
                          &error_offset, nullptr);
    if (code_ == nullptr) {
      fail("pre-tokenizer regex '{}' does not compile at offset {}: {}", regex, error_offset,
           pcre2_message(error_code));
    }
    // Without JIT (unsupported platform) pcre2_match falls back to the interpreter: slower, same result.
    pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE);
  }
  ~RegexSplitter() override { pcre2_code_free(code_); }
  RegexSplitter(const RegexSplitter&) = delete;
  RegexSplitter& operator=(const RegexSplitter&) = delete;

  void split(SplitInput& input, std::span<const WordSpan> pieces, std::vector<WordSpan>& out) const override {
    MatchScratch& scratch = thread_scratch();
    if (scratch.match_data == nullptr || scratch.match_context == nullptr) fail("out of memory for regex matching");
    if (collapsed_) {
      const std::string& text = input.collapsed();  // one byte per code point: byte offsets are code points
      for (const WordSpan& piece : pieces) {
        split_piece(scratch, text.data() + piece.begin, piece.end - piece.begin, [&](size_t offset) {
          return piece.begin + static_cast<uint32_t>(offset);
        }, out);
      }
    } else {
      const std::string& text = input.utf8();
      const std::vector<uint32_t>& offsets = input.utf8_offsets();  // [n_codepoints + 1]
      for (const WordSpan& piece : pieces) {
        const uint32_t byte_begin = offsets[piece.begin];
        const uint32_t byte_end = offsets[piece.end];
        split_piece(scratch, text.data() + byte_begin, byte_end - byte_begin, [&](size_t offset) {
          // Match bounds lie on character starts: find the code point that starts there.
          const auto it = std::lower_bound(offsets.begin() + piece.begin, offsets.begin() + piece.end + 1,
                                           byte_begin + static_cast<uint32_t>(offset));
          return static_cast<uint32_t>(it - offsets.begin());
        }, out);
      }
    }
  }

 private:
  // Matches left to right inside one piece (the piece is the whole subject, so lookahead and '$' stop at its
  // end) and appends the gaps and matches as words; `to_codepoint` maps a byte offset in the piece to a code
  // point index of the text.
  template <typename ToCodepoint>
  void split_piece(MatchScratch& scratch, const char* subject, size_t length, ToCodepoint to_codepoint,
                   std::vector<WordSpan>& out) const {
    size_t start = 0;     // where the next search begins
    size_t word_end = 0;  // end of the last word emitted
    auto emit = [&](size_t begin, size_t end) {
      if (end > begin) out.push_back({to_codepoint(begin), to_codepoint(end)});
    };
    while (start < length) {
      const int rc = pcre2_match(code_, reinterpret_cast<PCRE2_SPTR>(subject), length, start,
                                 collapsed_ ? 0 : PCRE2_NO_UTF_CHECK, scratch.match_data, scratch.match_context);
      if (rc == PCRE2_ERROR_NOMATCH) break;
      if (rc < 0) fail("pre-tokenizer regex '{}' failed on a {}-byte piece: {}", regex_, length, pcre2_message(rc));
      const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(scratch.match_data);
      const size_t match_begin = ovector[0];
      const size_t match_end = ovector[1];
      if (match_end <= match_begin) {
        // An empty match yields no word; step over one character and search again.
        start = match_begin + 1;
        if (!collapsed_) {
          while (start < length && (static_cast<unsigned char>(subject[start]) & 0xC0) == 0x80) ++start;
        }
        continue;
      }
      emit(word_end, match_begin);
      emit(match_begin, match_end);
      word_end = start = match_end;
    }
    emit(word_end, length);
  }

  std::string regex_;
  bool collapsed_ = false;
  pcre2_code* code_ = nullptr;
};

}  // namespace

std::unique_ptr<WordSplitter> make_regex_splitter(std::string_view regex) {
  return std::make_unique<RegexSplitter>(regex);
}

}  // namespace pagedllm
