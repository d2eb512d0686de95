#pragma once
// A Qwen-style byte-level BPE vocabulary for synthetic models: the 256 byte symbols, then tokens learned by BPE
// training on a small English text built into the project (merges in the order they were learned, so their ranks
// look like a trained tokenizer's: common pieces such as "Ġthe" early, rare ones late), then Qwen's special tokens.
// Deterministic: the same size always gives the same vocabulary, on any machine.
#include <cstdint>
#include <string>
#include <vector>

namespace pagedllm {

struct SyntheticBpeVocab {
  std::vector<std::string> tokens;   // [n_vocab] byte-level spelling (a byte as GPT-2's code point), then specials
  std::vector<int32_t> token_types;  // [n_vocab] 1 normal, 3 control, 4 user-defined (llama.cpp's numbering)
  std::vector<std::string> merges;   // "left right", rank order
  int32_t endoftext_id = -1;         // <|endoftext|>: BOS and padding in Qwen files
  int32_t im_start_id = -1;          // <|im_start|>
  int32_t im_end_id = -1;            // <|im_end|>: EOS (end of an assistant turn) in Qwen instruct files
};

// The special tokens come last: <|endoftext|>, <|im_start|>, <|im_end|> (control) and <think>, </think>
// (user-defined, matched in any text as Qwen3's are). Training stops early when no pair is left to merge, so the
// vocabulary may be smaller than `n_vocab` (never below the bytes and specials). Throws pagedllm::Error when
// n_vocab cannot hold the bytes and the specials.
SyntheticBpeVocab synthetic_bpe_vocab(int64_t n_vocab);

// The training text (a few KB of plain English with some code, numbers and non-ASCII words).
const std::string& synthetic_bpe_corpus();

}  // namespace pagedllm
