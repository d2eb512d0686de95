#!/usr/bin/env python3
"""Writes tests/golden/exact/<name>.json: the logits of an exact (float64) llama forward over a GGUF's weights.

For every case of a llama.cpp golden file (tests/golden/<name>.json, written by scripts/gen_golden.py) the script
teacher-forces that case's exact token sequence (the prompt's tokens, then llama.cpp's greedy tokens) through a
float64 forward and stores, for each of the case's steps, the float64 top-K ids and logits and the top-2 margin.
tests/test_exact_reference.cpp runs the engine over the same tokens and compares. llama.cpp's own error against
float64 (at its golden top-5 ids) is recorded too, for comparison.

The forward is the llama architecture as llama.cpp runs GGUF llama models, written out in numpy float64:
  weights:   every tensor dequantized by gguf-py (the values ggml's dequantizers produce), then widened to float64;
  embedding: row `token` of token_embd (no scaling);
  per layer: RMSNorm (eps from the file) * attn_norm; q/k/v projections (+ biases when the file has them);
             RoPE of type NORM: pairs (2i, 2i+1) of each head rotated by theta_i = pos * base^(-2i/n_rot)
             (base from the file, default 10000); causal attention, query head h reading KV head
             h // (n_head / n_head_kv), scores scaled by 1/sqrt(head_dim); output projection; residual;
             RMSNorm * ffn_norm; down(silu(gate(x)) * up(x)); residual;
  output:    RMSNorm * output_norm, then output.weight (token_embd.weight when the file has no output.weight).

    python3 -m venv /tmp/exactenv && /tmp/exactenv/bin/pip install gguf numpy
    /tmp/exactenv/bin/python scripts/gen_exact_reference.py          # then commit tests/golden/exact/*.json

Self-check (skip it with --no-known-answer): before anything is written, stories260K's greedy continuation of BOS
is compared with its published first tokens (403 407 261 378 ...), which a wrong RoPE pairing or GQA grouping
does not reproduce.
"""
import argparse
import json
import math
import os
import sys
from importlib.metadata import version

import numpy as np
import gguf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOP_K = 10

# Golden files whose cases are re-run exactly: llama.cpp golden name -> where its model lives.
MODELS = {
    "stories260K": os.path.join(ROOT, "..", "shared", "models", "stories260K.gguf"),
    "smollm2-135m-instruct-q4_1": os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}

# stories260K's published greedy continuation of BOS (its model card); checks the conventions above end to end.
STORIES_KNOWN_IDS = [403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338]


class Gguf:
    """The metadata and (lazily, one tensor at a time) the float64 weights of a llama-architecture GGUF file."""

    def __init__(self, path):
        self.reader = gguf.GGUFReader(path)
        self.tensors = {t.name: t for t in self.reader.tensors}
        arch = self.field("general.architecture")
        if arch != "llama":
            sys.exit(f"{path}: architecture {arch!r}, this reference implements only 'llama'")
        self.n_embd = self.field("llama.embedding_length")
        self.n_layer = self.field("llama.block_count")
        self.n_head = self.field("llama.attention.head_count")
        self.n_head_kv = self.field("llama.attention.head_count_kv", self.n_head)
        self.head_dim = self.field("llama.attention.key_length", self.n_embd // self.n_head)
        self.n_rot = self.field("llama.rope.dimension_count", self.head_dim)
        self.rope_base = float(self.field("llama.rope.freq_base", 10000.0))
        # The file stores eps as float32; its float32 value is the model's eps.
        self.eps = float(self.field("llama.attention.layer_norm_rms_epsilon"))
        for key in ("llama.rope.scaling.type", "llama.rope.scaling.factor", "llama.expert_count"):
            if key in self.reader.fields and self.field(key) not in ("none", 0, 0.0, 1.0):
                sys.exit(f"{path}: {key} = {self.field(key)!r} is not implemented by this reference")
        if "rope_freqs.weight" in self.tensors:
            sys.exit(f"{path}: rope_freqs.weight is not implemented by this reference")
        if self.n_rot != self.head_dim:
            sys.exit(f"{path}: rope dimension {self.n_rot} != head_dim {self.head_dim}")

    def field(self, key, default=None):
        f = self.reader.fields.get(key)
        if f is None:
            if default is None:
                sys.exit(f"missing metadata key {key}")
            return default
        return f.contents()

    def has(self, name):
        return name in self.tensors

    def weight(self, name):
        """[ne1, ne0] float64: row r is output feature r (ggml's ne0 is the contiguous, input dimension)."""
        t = self.tensors[name]
        values = gguf.quants.dequantize(t.data, t.tensor_type)
        shape = tuple(int(n) for n in reversed(t.shape))
        return np.asarray(values, dtype=np.float64).reshape(shape)


def rms_norm(x, gain, eps):
    # x: [n_tokens, n_embd]
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * gain


def rope_norm(x, positions, n_rot, base):
    """x: [n_tokens, n_heads, head_dim]; rotates adjacent pairs (2i, 2i+1) of the first n_rot dims."""
    i = np.arange(n_rot // 2, dtype=np.float64)
    inv_freq = base ** (-2.0 * i / n_rot)                            # [n_rot/2]
    theta = positions.astype(np.float64)[:, None] * inv_freq[None]  # [n_tokens, n_rot/2]
    cos = np.cos(theta)[:, None, :]                                  # [n_tokens, 1, n_rot/2]
    sin = np.sin(theta)[:, None, :]
    even = x[..., 0:n_rot:2]
    odd = x[..., 1:n_rot:2]
    out = x.copy()
    out[..., 0:n_rot:2] = even * cos - odd * sin
    out[..., 1:n_rot:2] = even * sin + odd * cos
    return out


def linear(m, name, x):
    """x @ W^T (+ b): x [n_tokens, in], W [out, in]."""
    y = x @ m.weight(name + ".weight").T
    if m.has(name + ".bias"):
        y = y + m.weight(name + ".bias")
    return y


def forward(m, tokens):
    """Logits [n_tokens, n_vocab] (float64) of a causal pass over `tokens` at positions 0..n_tokens-1."""
    n = len(tokens)
    positions = np.arange(n)
    x = m.weight("token_embd.weight")[np.asarray(tokens)]  # [n_tokens, n_embd]
    group = m.n_head // m.n_head_kv
    causal = np.triu(np.ones((n, n), dtype=bool), k=1)     # [n_q, n_k]: True above the diagonal (future)
    scale = 1.0 / math.sqrt(m.head_dim)
    for layer in range(m.n_layer):
        p = f"blk.{layer}."
        h = rms_norm(x, m.weight(p + "attn_norm.weight"), m.eps)
        q = linear(m, p + "attn_q", h).reshape(n, m.n_head, m.head_dim)     # [n_tokens, n_head, head_dim]
        k = linear(m, p + "attn_k", h).reshape(n, m.n_head_kv, m.head_dim)  # [n_tokens, n_head_kv, head_dim]
        v = linear(m, p + "attn_v", h).reshape(n, m.n_head_kv, m.head_dim)  # [n_tokens, n_head_kv, head_dim]
        q = rope_norm(q, positions, m.n_rot, m.rope_base)
        k = rope_norm(k, positions, m.n_rot, m.rope_base)
        # GQA: query head h reads KV head h // group, so each KV head is repeated for its group of query heads.
        k_per_q = np.repeat(k, group, axis=1)                                # [n_tokens, n_head, head_dim]
        v_per_q = np.repeat(v, group, axis=1)
        scores = np.einsum("qhd,khd->hqk", q, k_per_q) * scale               # [n_head, n_q, n_k]
        scores[:, causal] = -np.inf
        scores -= scores.max(axis=-1, keepdims=True)
        weights = np.exp(scores)
        weights /= weights.sum(axis=-1, keepdims=True)
        attn = np.einsum("hqk,khd->qhd", weights, v_per_q).reshape(n, m.n_head * m.head_dim)
        x = x + linear(m, p + "attn_output", attn)
        h = rms_norm(x, m.weight(p + "ffn_norm.weight"), m.eps)
        gate = linear(m, p + "ffn_gate", h)
        up = linear(m, p + "ffn_up", h)
        x = x + linear(m, p + "ffn_down", gate / (1.0 + np.exp(-gate)) * up)
    h = rms_norm(x, m.weight("output_norm.weight"), m.eps)
    out_name = "output.weight" if m.has("output.weight") else "token_embd.weight"
    return h @ m.weight(out_name).T


def top(logits, k):
    order = np.argsort(-logits, kind="stable")[:k]
    return [[int(i), float(logits[i])] for i in order]


def check_known_answer(model_path):
    m = Gguf(model_path)
    tokens = [1]
    for _ in range(len(STORIES_KNOWN_IDS)):
        tokens.append(int(np.argmax(forward(m, tokens)[-1])))
    if tokens[1:] != STORIES_KNOWN_IDS:
        sys.exit(f"stories260K known answer mismatch: {tokens[1:]} != {STORIES_KNOWN_IDS}")
    print(f"stories260K known answer reproduced: {' '.join(map(str, tokens[1:]))}")


def generate(name, model_path):
    with open(os.path.join(ROOT, "tests", "golden", f"{name}.json")) as f:
        golden = json.load(f)
    m = Gguf(model_path)
    cases = []
    llama_max, llama_sum, llama_steps = 0.0, 0.0, 0
    argmax_agree = 0
    for case in golden["cases"]:
        prompt_tokens = [int(t) for t in case["prompt_tokens"]]
        greedy = [int(s["token"]) for s in case["steps"]]
        # The last step's token is never fed back, so the sequence stops one short of it.
        tokens = prompt_tokens + greedy[:-1]
        first_step = len(prompt_tokens) - 1
        logits = forward(m, tokens)  # [n_tokens, n_vocab]
        steps = []
        for s, golden_step in enumerate(case["steps"]):
            row = logits[first_step + s]
            best = top(row, TOP_K)
            # llama.cpp's error against exact math, at the ids of its own top 5.
            llama_diff = max(abs(float(logit) - row[int(i)]) for i, logit in golden_step["top5"])
            llama_max = max(llama_max, llama_diff)
            llama_sum += llama_diff
            llama_steps += 1
            argmax_agree += int(best[0][0] == golden_step["token"])
            steps.append({"top": best, "margin": best[0][1] - best[1][1],
                          "llama_cpp_max_abs_diff": llama_diff})
        cases.append({"prompt": case["prompt"], "tokens": tokens, "first_step": first_step, "steps": steps})
        print(f"  {name}: case of {len(prompt_tokens)} prompt tokens done")
    return {
        "model": golden["model"],
        "model_location": golden["model_location"],
        "generator": "scripts/gen_exact_reference.py",
        "tokens_from": f"tests/golden/{name}.json ({golden['reference']}): prompt tokens, then its greedy tokens",
        "reference": "float64 numpy forward over weights dequantized by gguf-py",
        "versions": {"gguf": version("gguf"), "numpy": np.__version__,
                     "python": sys.version.split()[0]},
        "top_k": TOP_K,
        "llama_cpp_reference": golden["reference"] + ", " + golden["settings"].split(",")[0] + ", F16 K/V cache",
        "llama_cpp_vs_float64": {
            "max_abs_diff": llama_max,
            "mean_step_max_abs_diff": llama_sum / llama_steps,
            "argmax_equal_steps": argmax_agree,
            "steps": llama_steps,
        },
        "cases": cases,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=sorted(MODELS), help="regenerate one file")
    parser.add_argument("--no-known-answer", action="store_true", help="skip the stories260K self-check")
    args = parser.parse_args()
    for path in MODELS.values():
        if not os.path.exists(path):
            sys.exit(f"missing model {path} (run scripts/setup.sh)")
    if not args.no_known_answer:
        check_known_answer(MODELS["stories260K"])
    out_dir = os.path.join(ROOT, "tests", "golden", "exact")
    os.makedirs(out_dir, exist_ok=True)
    for name, model_path in MODELS.items():
        if args.only and name != args.only:
            continue
        data = generate(name, model_path)
        path = os.path.join(out_dir, f"{name}.json")
        with open(path, "w") as f:
            json.dump(data, f, indent=None, separators=(",", ":"))
            f.write("\n")
        summary = data["llama_cpp_vs_float64"]
        print(f"wrote {path}: {len(data['cases'])} cases; llama.cpp vs float64: max {summary['max_abs_diff']:.4f}, "
              f"mean step max {summary['mean_step_max_abs_diff']:.4f}, argmax equal "
              f"{summary['argmax_equal_steps']}/{summary['steps']}")


if __name__ == "__main__":
    main()
