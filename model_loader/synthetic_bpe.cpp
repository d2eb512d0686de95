#include "model_loader/synthetic_bpe.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <string_view>
#include <tuple>
#include <unordered_map>

#include "common/error.h"

namespace pagedllm {
namespace {

// Written for this project: everyday prose, a little dialogue with contractions, numbers, code and a few accented
// and non-Latin words, so that the learned merges cover the kinds of text tests feed a tokenizer.
constexpr std::string_view kCorpus = R"corpus(The morning was cold and clear, and the river ran quickly under the old stone bridge.
Anna walked to the market with her brother. They wanted to buy bread, apples, cheese and a small bag of coffee.
"We don't have much time," she said. "The train leaves at 10:45, and I'd like to be there early."
Her brother laughed. "You're always early. We'll be fine, it's only a short walk from here."
At the market the sellers were already calling out their prices. One man sold honey in glass jars; another sold
warm bread that smelled of butter and salt. Anna counted her money twice: 3 euros for the bread, 2 for the apples,
and 7.50 for the cheese. That left 12 euros for the coffee and the tickets.
When they reached the station, the clock showed 10:31. The platform was crowded with people who were going to the
city for the weekend. Some of them carried heavy suitcases, others only a book or a newspaper.

A computer keeps the memory of a program in pages. Each page is a block of the same size, and a table tells the
machine where every page lives. When a program asks for more memory, the system finds a free block and writes its
number into the table. Sharing a page between two programs is cheap: both tables point at the same block, and the
block is copied only when one of them writes to it. This is called copy on write.
The same idea works for the cache of a language model. The keys and values of every token are stored in blocks,
and each sequence has a table of the blocks it uses. Two answers to the same question can share the blocks of the
question, and a new block is made only when they begin to differ.

def add(a, b):
    """Return the sum of a and b."""
    return a + b

for i in range(10):
    print(i, add(i, 2 * i))

int main(void) {
    int total = 0;
    for (int i = 0; i < 100; ++i) total += i;
    printf("%d\n", total);
    return 0;
}

Questions people often ask: What is the capital of France? How far is the moon? Why is the sky blue?
The capital of France is Paris. The moon is about 384400 kilometres away. The sky looks blue because air scatters
short waves of light more than long ones.
Numbers: 1, 2, 3, 42, 100, 2024, 3.14159, 0.5, -7, 1e6.
Some words from other languages: café, naïve, façade, Zürich, São Paulo, Ελληνικά, русский, 日本語, 中文, 한국어.
I'm sure you'll find that they've read it; he'd agree, and we're happy they'll come. It's late, isn't it?
THE END OF THE STORY. The end of the story. the end of the story!
)corpus";

bool is_letter(unsigned char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80; }
bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
bool is_space(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
bool is_newline(unsigned char c) { return c == '\n' || c == '\r'; }
bool is_other(unsigned char c) { return !is_letter(c) && !is_digit(c) && !is_space(c); }

// Words as Qwen's pre-tokenizer cuts ASCII text (bytes >= 0x80 count as letters): contractions, an optional
// leading non-letter glued to a letter run, single digits, punctuation runs with an optional leading space and
// trailing newlines, whitespace runs that leave the last space to the next word. Training only needs the same
// kind of words, not the exact rule, which the tokenizer itself applies.
std::vector<std::string> split_words(std::string_view text) {
  std::vector<std::string> words;
  size_t i = 0;
  const size_t n = text.size();
  auto letters_from = [&](size_t at) {
    while (at < n && is_letter(static_cast<unsigned char>(text[at]))) ++at;
    return at;
  };
  while (i < n) {
    const auto c = static_cast<unsigned char>(text[i]);
    const auto next = i + 1 < n ? static_cast<unsigned char>(text[i + 1]) : 0;
    size_t end = i + 1;
    if (c == '\'' && i + 1 < n) {
      for (std::string_view suffix : {"ll", "re", "ve", "s", "t", "m", "d"}) {
        if (text.substr(i + 1, suffix.size()) == suffix) {
          end = i + 1 + suffix.size();
          break;
        }
      }
      if (end == i + 1 && is_letter(next)) end = letters_from(i + 1);
    } else if (is_letter(c)) {
      end = letters_from(i);
    } else if (!is_digit(c) && !is_newline(c) && is_letter(next)) {
      end = letters_from(i + 1);  // " the", "(hello"
    } else if (is_digit(c)) {
      end = i + 1;
    } else if (is_other(c) || (c == ' ' && is_other(next))) {
      end = i + 1;
      while (end < n && is_other(static_cast<unsigned char>(text[end]))) ++end;
      while (end < n && is_newline(static_cast<unsigned char>(text[end]))) ++end;
    } else {
      end = i;
      while (end < n && is_space(static_cast<unsigned char>(text[end]))) ++end;
      // A run of spaces before a word leaves its last space to that word.
      if (end < n && end - i > 1 && text[end - 1] == ' ') --end;
    }
    words.emplace_back(text.substr(i, end - i));
    i = end;
  }
  return words;
}

// GPT-2's byte-level alphabet: printable Latin-1 bytes stand for themselves, the other 68 bytes for U+0100 upwards
// in byte order.
bool is_printable_byte(uint32_t byte) {
  return (byte >= 0x21 && byte <= 0x7E) || (byte >= 0xA1 && byte <= 0xAC) || (byte >= 0xAE && byte <= 0xFF);
}

// The UTF-8 spelling of the code point that stands for `byte`.
std::string byte_symbol(unsigned char byte) {
  uint32_t codepoint = byte;
  if (!is_printable_byte(byte)) {
    codepoint = 0x100;
    for (uint32_t b = 0; b < byte; ++b) codepoint += is_printable_byte(b) ? 0 : 1;
  }
  std::string out;
  if (codepoint < 0x80) {
    out += static_cast<char>(codepoint);
  } else {
    out += static_cast<char>(0xC0 | (codepoint >> 6));
    out += static_cast<char>(0x80 | (codepoint & 0x3F));
  }
  return out;
}

// The 256 bytes in the order byte-level vocabularies list their symbols: the printable bytes first, in byte order,
// then the rest (whose symbols are U+0100, U+0101, ...).
std::vector<unsigned char> byte_order() {
  std::vector<unsigned char> printable, other;
  for (uint32_t b = 0; b < 256; ++b) (is_printable_byte(b) ? printable : other).push_back(static_cast<unsigned char>(b));
  printable.insert(printable.end(), other.begin(), other.end());
  return printable;
}

constexpr int32_t kNormal = 1, kControl = 3, kUserDefined = 4;
constexpr const char* kControlTokens[] = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
constexpr const char* kUserDefinedTokens[] = {"<think>", "</think>"};
constexpr int64_t kSpecials = 5;

}  // namespace

const std::string& synthetic_bpe_corpus() {
  static const std::string corpus(kCorpus);
  return corpus;
}

SyntheticBpeVocab synthetic_bpe_vocab(int64_t n_vocab) {
  if (n_vocab < 256 + kSpecials) {
    fail("a byte-level BPE vocabulary of {} tokens cannot hold the 256 bytes and {} special tokens", n_vocab,
         kSpecials);
  }
  SyntheticBpeVocab v;
  std::unordered_map<std::string, int32_t> id_of;  // symbol text -> id
  auto add_token = [&](const std::string& text) {
    auto [it, inserted] = id_of.emplace(text, static_cast<int32_t>(v.tokens.size()));
    if (inserted) {
      v.tokens.push_back(text);
      v.token_types.push_back(kNormal);
    }
    return it->second;
  };
  for (unsigned char byte : byte_order()) add_token(byte_symbol(byte));

  // Each distinct word as a sequence of symbol ids, with its count in the corpus.
  std::map<std::string, int64_t> word_counts;
  for (const std::string& word : split_words(kCorpus)) ++word_counts[word];
  struct Word {
    std::vector<int32_t> symbols;
    int64_t count;
  };
  std::vector<Word> words;
  for (const auto& [text, count] : word_counts) {
    Word w{{}, count};
    for (char c : text) w.symbols.push_back(id_of.at(byte_symbol(static_cast<unsigned char>(c))));
    words.push_back(std::move(w));
  }

  const int64_t target = n_vocab - kSpecials;
  while (static_cast<int64_t>(v.tokens.size()) < target) {
    std::unordered_map<uint64_t, int64_t> pair_counts;
    for (const Word& w : words) {
      for (size_t i = 0; i + 1 < w.symbols.size(); ++i) {
        pair_counts[(static_cast<uint64_t>(w.symbols[i]) << 32) | static_cast<uint32_t>(w.symbols[i + 1])] += w.count;
      }
    }
    if (pair_counts.empty()) break;
    // The most frequent pair; ties go to the smaller (left text, right text), so the result is the same whatever
    // order the hash map iterates in.
    uint64_t best = 0;
    int64_t best_count = 0;
    for (const auto& [pair, count] : pair_counts) {
      const auto left = static_cast<size_t>(pair >> 32), right = static_cast<size_t>(pair & 0xFFFFFFFFu);
      const auto best_left = static_cast<size_t>(best >> 32), best_right = static_cast<size_t>(best & 0xFFFFFFFFu);
      const bool better = count > best_count ||
                          (count == best_count && std::tie(v.tokens[left], v.tokens[right]) <
                                                      std::tie(v.tokens[best_left], v.tokens[best_right]));
      if (better) {
        best = pair;
        best_count = count;
      }
    }
    const auto left = static_cast<int32_t>(best >> 32), right = static_cast<int32_t>(best & 0xFFFFFFFFu);
    v.merges.push_back(v.tokens[static_cast<size_t>(left)] + " " + v.tokens[static_cast<size_t>(right)]);
    const int32_t merged = add_token(v.tokens[static_cast<size_t>(left)] + v.tokens[static_cast<size_t>(right)]);
    for (Word& w : words) {
      std::vector<int32_t> out;
      out.reserve(w.symbols.size());
      for (size_t i = 0; i < w.symbols.size(); ++i) {
        if (i + 1 < w.symbols.size() && w.symbols[i] == left && w.symbols[i + 1] == right) {
          out.push_back(merged);
          ++i;
        } else {
          out.push_back(w.symbols[i]);
        }
      }
      w.symbols = std::move(out);
    }
  }

  for (const char* special : kControlTokens) {
    v.tokens.emplace_back(special);
    v.token_types.push_back(kControl);
  }
  for (const char* special : kUserDefinedTokens) {
    v.tokens.emplace_back(special);
    v.token_types.push_back(kUserDefined);
  }
  const auto first_special = static_cast<int32_t>(v.tokens.size() - kSpecials);
  v.endoftext_id = first_special;
  v.im_start_id = first_special + 1;
  v.im_end_id = first_special + 2;
  return v;
}

}  // namespace pagedllm
