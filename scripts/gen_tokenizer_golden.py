#!/usr/bin/env python3
"""Writes tests/golden/tokenizer/<name>.json: llama.cpp's tokenizer (PyPI llama-cpp-python) on the Qwen-style byte-level
BPE vocabulary of the project's synthetic qwen models (model_loader/synthetic_bpe.h: bytes, merges learned from a small
built-in text, Qwen's control and user-defined special tokens, tokenizer.ggml.pre = "qwen2"), or, with --gemma, on the
real Gemma 3 vocabulary (262144 SentencePiece tokens, no space prefix, byte fallback, user-defined whitespace runs)
of models/gemma-3-270m-q4_k_m.gguf (scripts/setup.sh assembles it).

For every test string (all those of ../shared/tokenizer-tests/*.inp, then strings aimed at the qwen2 pre-tokenizer and
the special tokens), with parse_special off and on: the ids llama.cpp produces (add_special on: these files add no
BOS). For every id of the vocabulary: its piece, with special tokens rendered and not.

    /tmp/llamaenv/bin/python scripts/gen_tokenizer_golden.py --writer build/write_synthetic_model
    /tmp/llamaenv/bin/python scripts/gen_tokenizer_golden.py --gemma

For the Gemma vocabulary, whose every piece would make a 10 MB file, the pieces recorded are those of ids 0..4095
(control, byte and user-defined tokens and the most frequent words) and of every 61st id after that.

The model file is written by the project's writer and not committed: the golden file records the preset and the file's
FNV-1a 64 fingerprint, and tests/test_tokenizer_vectors.cpp regenerates the file and checks the fingerprint first.
"""
import argparse
import ctypes
import glob
import json
import os
import sys
import tempfile

import llama_cpp
from llama_cpp import Llama

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_golden import ROOT, write_synthetic  # noqa: E402

SEPARATOR = "\n__ggml_vocab_test__\n"

# Aimed at what sets the qwen2 pre-tokenizer apart (digits one by one, a letter run taking one leading non-letter,
# punctuation runs with trailing newlines, whitespace before newlines) and at the special tokens (control tokens
# only with parse_special, user-defined <think> always).
QWEN_STRINGS = [
    "1234567890",
    "The year 2024 had 366 days; 3.14159 is pi.",
    "Hello world",
    " Hello world",
    "Hello  world   again",
    "it's, I'd, we'll, they've, you're, I'm, he'd, IT'S, We'LL",
    "(hello) [world] {again} <tag>",
    "a\nb\n\nc\r\n\r\nd   \n  e",
    "   leading and trailing spaces   ",
    "\t\ttabs\tand\tmore\t",
    "!!!??? ... --- ***\n\n",
    "café naïve façade Zürich São Paulo",
    "Ελληνικά русский 日本語 中文 한국어 🦙🚀",
    "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|>text after end",
    "<think>\nreasoning here\n</think>\n\nThe answer is 42.",
    "<|im_start|><|im_end|><think></think>",
    "<|im_start|partial|> <|im_end",
    "def add(a, b):\n    \"\"\"Return the sum of a and b.\"\"\"\n    return a + b\n",
    "for (int i = 0; i < 100; ++i) total += i;",
]


# Aimed at the Gemma vocabulary: no space prefix, whitespace runs and newlines as user-defined tokens, byte
# fallback for characters outside the vocabulary, the turn markers (control tokens) and the image markers.
GEMMA_STRINGS = [
    "<start_of_turn>user\nWhat is the capital of France?<end_of_turn>\n<start_of_turn>model\n",
    "<bos><start_of_turn>system\nBe brief.<end_of_turn>\n",
    "<start_of_image> <end_of_image><eos><pad>",
    "Hello world",
    " Hello world",
    "Hello  world   again    and\tagain",
    "a\nb\n\nc\n\n\nd\r\n\r\ne",
    "    indented code\n        more indented\n",
    "The year 2024 had 366 days; 3.14159 is pi.",
    "café naïve façade Zürich São Paulo",
    "Ελληνικά русский 日本語 中文 한국어 🦙🚀 \u0001\u0002 \U0001F9EC",
    "<unused0><unused99> <mask> [multimodal]",
    "def add(a, b):\n    \"\"\"Return the sum of a and b.\"\"\"\n    return a + b\n",
]


def test_strings(extra=None):
    strings = []
    seen = set()
    for path in sorted(glob.glob(os.path.join(ROOT, "..", "shared", "tokenizer-tests", "*.inp"))):
        with open(path, encoding="utf-8") as f:
            pieces = f.read().split(SEPARATOR)
        for text in pieces[:-1]:  # the piece after the last separator is empty and not a test
            if text not in seen:
                seen.add(text)
                strings.append(text)
    for text in (QWEN_STRINGS if extra is None else extra):
        if text not in seen:
            seen.add(text)
            strings.append(text)
    return strings


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--writer", default=os.path.join(ROOT, "build", "write_synthetic_model"),
                        help="the write_synthetic_model tool of a build (default: build/write_synthetic_model)")
    parser.add_argument("--preset", default="qwen2-tiny")
    parser.add_argument("--gemma", action="store_true",
                        help="the real Gemma 3 vocabulary of models/gemma-3-270m-q4_k_m.gguf instead of a preset")
    args = parser.parse_args()
    if args.gemma:
        write_gemma()
        return
    with tempfile.TemporaryDirectory() as scratch:
        model_path, fingerprint = write_synthetic(args.writer, args.preset, scratch)
        llm = Llama(model_path=model_path, vocab_only=True, verbose=False)
        cases = []
        for text in test_strings():
            for parse_special in (False, True):
                ids = llm.tokenize(text.encode("utf-8"), add_bos=True, special=parse_special)
                cases.append({"text": text, "parse_special": parse_special, "ids": [int(t) for t in ids]})
        n_vocab = llm.n_vocab()
        pieces = [llm.detokenize([i], special=False).hex() for i in range(n_vocab)]
        special_pieces = [llm.detokenize([i], special=True).hex() for i in range(n_vocab)]
    data = {
        "model": args.preset,
        "model_location": "synthetic",
        "model_fnv1a64": fingerprint,
        "generator": "scripts/gen_tokenizer_golden.py",
        "reference": f"llama.cpp via llama-cpp-python {llama_cpp.__version__}",
        "settings": "tokenize with add_special on (no BOS for this vocabulary), parse_special off and on; pieces "
                    "of every id as hex, special tokens not rendered and rendered",
        "cases": cases,
        "pieces_hex": pieces,
        "special_pieces_hex": special_pieces,
    }
    out_dir = os.path.join(ROOT, "tests", "golden", "tokenizer")
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"{args.preset}-bpe.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=0, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {path}: {len(cases)} cases, {n_vocab} pieces")


GEMMA_FILE = "gemma-3-270m-q4_k_m.gguf"
GEMMA_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"


def piece(llm, token, special):
    """llama.cpp's piece of one id. Llama.detokenize reads at most 32 bytes per token and returns nothing for a
    longer piece (Gemma has pieces of 40 bytes and more), so the library function is called with room enough."""
    size = 1024
    buffer = (ctypes.c_char * size)()
    n = llama_cpp.llama_token_to_piece(llm._model.vocab, llama_cpp.llama_token(token), buffer, size, 0, special)
    if n < 0:
        sys.exit(f"piece of id {token} needs {-n} bytes")
    return bytes(buffer[:n])


def write_gemma():
    path = os.path.join(ROOT, "models", GEMMA_FILE)
    if not os.path.exists(path):
        sys.exit(f"missing {path} (scripts/setup.sh assembles it)")
    llm = Llama(model_path=path, vocab_only=True, verbose=False)
    cases = []
    for text in test_strings(GEMMA_STRINGS):
        for parse_special in (False, True):
            ids = llm.tokenize(text.encode("utf-8"), add_bos=True, special=parse_special)
            cases.append({"text": text, "parse_special": parse_special, "ids": [int(t) for t in ids]})
    n_vocab = llm.n_vocab()
    piece_ids = list(range(4096)) + list(range(4096, n_vocab, 61))
    data = {
        "model": GEMMA_FILE,
        "model_location": "models",
        "model_sha256": GEMMA_SHA256,
        "generator": "scripts/gen_tokenizer_golden.py --gemma",
        "reference": f"llama.cpp via llama-cpp-python {llama_cpp.__version__}",
        "settings": "tokenize with add_special on (BOS added), parse_special off and on; pieces of the ids in piece_ids "
                    "as hex, special tokens not rendered and rendered",
        "n_vocab": n_vocab,
        "cases": cases,
        "piece_ids": piece_ids,
        "pieces_hex": [piece(llm, i, False).hex() for i in piece_ids],
        "special_pieces_hex": [piece(llm, i, True).hex() for i in piece_ids],
    }
    out = os.path.join(ROOT, "tests", "golden", "tokenizer", "gemma-3-270m-spm.json")
    with open(out, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=0, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {out}: {len(cases)} cases, {len(piece_ids)} pieces")


if __name__ == "__main__":
    main()
