#!/usr/bin/env python3
"""Writes tests/golden/tokenizer/<name>.json: llama.cpp's tokenizer (PyPI llama-cpp-python) on the Qwen-style byte-level
BPE vocabulary of the project's synthetic qwen models (model_loader/synthetic_bpe.h: bytes, merges learned from a small
built-in text, Qwen's control and user-defined special tokens, tokenizer.ggml.pre = "qwen2").

For every test string (all those of ../shared/tokenizer-tests/*.inp, then strings aimed at the qwen2 pre-tokenizer and
the special tokens), with parse_special off and on: the ids llama.cpp produces (add_special on: these files add no
BOS). For every id of the vocabulary: its piece, with special tokens rendered and not.

    /tmp/llamaenv/bin/python scripts/gen_tokenizer_golden.py --writer build/write_synthetic_model

The model file is written by the project's writer and not committed: the golden file records the preset and the file's
FNV-1a 64 fingerprint, and tests/test_tokenizer_vectors.cpp regenerates the file and checks the fingerprint first.
"""
import argparse
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


def test_strings():
    strings = []
    seen = set()
    for path in sorted(glob.glob(os.path.join(ROOT, "..", "shared", "tokenizer-tests", "*.inp"))):
        with open(path, encoding="utf-8") as f:
            pieces = f.read().split(SEPARATOR)
        for text in pieces[:-1]:  # the piece after the last separator is empty and not a test
            if text not in seen:
                seen.add(text)
                strings.append(text)
    for text in QWEN_STRINGS:
        if text not in seen:
            seen.add(text)
            strings.append(text)
    return strings


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--writer", default=os.path.join(ROOT, "build", "write_synthetic_model"),
                        help="the write_synthetic_model tool of a build (default: build/write_synthetic_model)")
    parser.add_argument("--preset", default="qwen2-tiny")
    args = parser.parse_args()
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


if __name__ == "__main__":
    main()
