// Hand-written equivalents of the two regexes that llama.cpp does not run through std::regex:
//   GPT-2:  's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)
//   LLAMA3: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|
//           \s+(?!\S)|\s+
// At each position the first alternative that applies wins, exactly as llama.cpp's splitters decide it, including
// their reading of the piece end (a position past the end is no character of any class).
#include "common/unicode.h"
#include "tokenizer/word_splitter.h"

namespace pagedllm {
namespace {

// Classification of the code points of one piece; positions outside [begin, end) are "no character".
class PieceView {
 public:
  PieceView(const uint32_t* codepoints, uint32_t begin, uint32_t end)
      : codepoints_(codepoints), begin_(begin), end_(end), flags_(unicode::flag_table()) {}

  bool in_piece(uint32_t pos) const { return pos >= begin_ && pos < end_; }
  uint32_t codepoint(uint32_t pos) const { return in_piece(pos) ? codepoints_[pos] : kNoCodepoint; }
  bool is_letter(uint32_t pos) const { return in_piece(pos) && flags(pos).is_letter(); }
  bool is_number(uint32_t pos) const { return in_piece(pos) && flags(pos).is_number(); }
  bool is_whitespace(uint32_t pos) const { return in_piece(pos) && flags(pos).is_whitespace(); }
  // [^\s\p{L}\p{N}]: a character that is neither whitespace, letter nor number.
  bool is_other(uint32_t pos) const {
    if (!in_piece(pos)) return false;
    const unicode::CodepointFlags f = flags(pos);
    return !f.is_whitespace() && !f.is_letter() && !f.is_number();
  }
  bool is_cr_or_lf(uint32_t pos) const {
    const uint32_t cp = codepoint(pos);
    return cp == '\r' || cp == '\n';
  }
  uint32_t end() const { return end_; }

  static constexpr uint32_t kNoCodepoint = 0xFFFFFFFF;

 private:
  unicode::CodepointFlags flags(uint32_t pos) const {
    const uint32_t cp = codepoints_[pos];
    return unicode::CodepointFlags(cp < unicode::kCodepointCount ? flags_[cp] : uint8_t{0});
  }

  const uint32_t* codepoints_;
  uint32_t begin_;
  uint32_t end_;
  const uint8_t* flags_;
};

// Length of the contraction ('s 't 'm 'd 're 've 'll) starting at `pos`, or 0. The llama3 form is
// case-insensitive; ASCII lower-casing is exact there because no other code point lower-cases to these letters
// (scripts/gen_unicode_tables.py checks that).
uint32_t contraction_length(const PieceView& piece, uint32_t pos, bool ignore_case) {
  if (piece.codepoint(pos) != '\'' || !piece.in_piece(pos + 1)) return 0;
  auto letter_at = [&](uint32_t p) -> uint32_t {
    const uint32_t cp = piece.codepoint(p);
    return (ignore_case && cp >= 'A' && cp <= 'Z') ? cp + ('a' - 'A') : cp;
  };
  const uint32_t next = letter_at(pos + 1);
  if (next == 's' || next == 't' || next == 'm' || next == 'd') return 2;
  if (!piece.in_piece(pos + 2)) return 0;
  const uint32_t next_next = letter_at(pos + 2);
  if ((next == 'r' && next_next == 'e') || (next == 'v' && next_next == 'e') || (next == 'l' && next_next == 'l')) {
    return 3;
  }
  return 0;
}

class WordEmitter {
 public:
  WordEmitter(std::vector<WordSpan>& out, uint32_t begin) : out_(out), word_begin_(begin) {}
  // Ends the current word at `end` (nothing when empty) and returns `end` as the new position.
  uint32_t emit(uint32_t end) {
    if (end > word_begin_) out_.push_back({word_begin_, end});
    word_begin_ = end;
    return end;
  }

 private:
  std::vector<WordSpan>& out_;
  uint32_t word_begin_;
};

class Gpt2Splitter final : public WordSplitter {
 public:
  void split(SplitInput& input, std::span<const WordSpan> pieces, std::vector<WordSpan>& out) const override {
    const uint32_t* codepoints = input.codepoints().data();
    for (const WordSpan& span : pieces) {
      const PieceView piece(codepoints, span.begin, span.end);
      WordEmitter words(out, span.begin);
      uint32_t pos = span.begin;
      while (pos < span.end) {
        if (uint32_t length = contraction_length(piece, pos, /*ignore_case=*/false)) {
          pos = words.emit(pos + length);
          continue;
        }
        // ` ?X+`: an optional ASCII space, then a run of one class, decided by the character after the space.
        const uint32_t run_begin = piece.codepoint(pos) == ' ' ? pos + 1 : pos;
        if (piece.is_letter(run_begin)) {
          uint32_t p = run_begin;
          while (piece.is_letter(p)) ++p;
          pos = words.emit(p);
          continue;
        }
        if (piece.is_number(run_begin)) {
          uint32_t p = run_begin;
          while (piece.is_number(p)) ++p;
          pos = words.emit(p);
          continue;
        }
        if (piece.is_other(run_begin)) {
          uint32_t p = run_begin;
          while (piece.is_other(p)) ++p;
          pos = words.emit(p);
          continue;
        }
        uint32_t n_whitespace = 0;
        while (piece.is_whitespace(pos + n_whitespace)) ++n_whitespace;
        if (n_whitespace > 1 && piece.in_piece(pos + n_whitespace)) {
          // \s+(?!\S): leave the last whitespace character to prefix the word that follows.
          pos = words.emit(pos + n_whitespace - 1);
        } else if (n_whitespace > 0) {
          pos = words.emit(pos + n_whitespace);
        } else {
          pos = words.emit(pos + 1);
        }
      }
    }
  }
};

class Llama3Splitter final : public WordSplitter {
 public:
  void split(SplitInput& input, std::span<const WordSpan> pieces, std::vector<WordSpan>& out) const override {
    const uint32_t* codepoints = input.codepoints().data();
    for (const WordSpan& span : pieces) {
      const PieceView piece(codepoints, span.begin, span.end);
      WordEmitter words(out, span.begin);
      uint32_t pos = span.begin;
      while (pos < span.end) {
        if (uint32_t length = contraction_length(piece, pos, /*ignore_case=*/true)) {
          pos = words.emit(pos + length);
          continue;
        }
        // [^\r\n\p{L}\p{N}]?\p{L}+ : one leading character that is not CR, LF or a number (a letter included).
        if (!piece.is_cr_or_lf(pos) && !piece.is_number(pos) &&
            (piece.is_letter(pos) || piece.is_letter(pos + 1))) {
          uint32_t p = pos + 1;
          while (piece.is_letter(p)) ++p;
          pos = words.emit(p);
          continue;
        }
        // \p{N}{1,3}: a digit run cut into chunks of three from the left.
        if (piece.is_number(pos)) {
          uint32_t p = pos;
          uint32_t chunk_begin = pos;
          while (piece.is_number(p)) {
            ++p;
            if (p - chunk_begin >= 3) chunk_begin = words.emit(p);
          }
          pos = words.emit(p);
          continue;
        }
        // ` ?[^\s\p{L}\p{N}]+[\r\n]*`. A lone space at the piece end also lands here (as one word), as in
        // llama.cpp, which gives the same word as the whitespace rule would.
        const bool leading_space = piece.codepoint(pos) == ' ';
        const uint32_t run_begin = leading_space ? pos + 1 : pos;
        if (piece.is_other(run_begin) || (leading_space && !piece.in_piece(run_begin))) {
          uint32_t p = run_begin;
          while (piece.is_other(p)) ++p;
          while (piece.is_cr_or_lf(p)) ++p;
          pos = words.emit(p);
          continue;
        }
        uint32_t n_whitespace = 0;
        uint32_t after_last_cr_or_lf = 0;  // 0: the run has no CR/LF
        while (piece.is_whitespace(pos + n_whitespace)) {
          if (piece.is_cr_or_lf(pos + n_whitespace)) after_last_cr_or_lf = pos + n_whitespace + 1;
          ++n_whitespace;
        }
        if (after_last_cr_or_lf > 0) {
          pos = words.emit(after_last_cr_or_lf);  // \s*[\r\n]+
        } else if (n_whitespace > 1 && piece.in_piece(pos + n_whitespace)) {
          pos = words.emit(pos + n_whitespace - 1);  // \s+(?!\S)
        } else if (n_whitespace > 0) {
          pos = words.emit(pos + n_whitespace);  // \s+
        } else {
          pos = words.emit(pos + 1);
        }
      }
    }
  }
};

}  // namespace

std::unique_ptr<WordSplitter> make_gpt2_splitter() { return std::make_unique<Gpt2Splitter>(); }
std::unique_ptr<WordSplitter> make_llama3_splitter() { return std::make_unique<Llama3Splitter>(); }

}  // namespace pagedllm
