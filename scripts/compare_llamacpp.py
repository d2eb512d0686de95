#!/usr/bin/env python3
"""Prompt and generation tokens/s of pagedllm beside llama.cpp (llama-cpp-python) on the same model, prompt and
thread count, measured in one run, alternating the two engines REPEATS times (the machine is shared and noisy).

    /tmp/llamaenv/bin/python scripts/compare_llamacpp.py [-m MODEL] [-t THREADS] [-n TOKENS] [-r REPEATS]

llama.cpp side: Llama.eval() of the prompt (one batch), then N single-token evals of greedy tokens, timed with
perf_counter. pagedllm side: `pagedllm run --temp 0 --ignore-eos --stats json`, whose statistics time the same
two phases.
"""
import argparse
import json
import os
import statistics
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROMPT = ("In the early days of computing, memory was scarce and every byte had to be accounted for. Engineers "
          "designed clever schemes to share it between programs, such as paging, where memory is split into "
          "fixed-size blocks that can be mapped anywhere. Today the same idea helps language models serve many "
          "users at once, because the attention cache of each conversation can grow block by block without")


def run_llamacpp(model, threads, n):
    from llama_cpp import Llama
    llm = Llama(model_path=model, n_ctx=1024, n_batch=512, n_threads=threads, n_threads_batch=threads,
                logits_all=False, verbose=False)
    tokens = llm.tokenize(PROMPT.encode(), add_bos=True, special=True)
    llm.reset()
    t0 = time.perf_counter()
    llm.eval(tokens)
    t1 = time.perf_counter()
    token = 0
    for _ in range(n):
        llm.eval([token])
    t2 = time.perf_counter()
    return len(tokens) / (t1 - t0), n / (t2 - t1), len(tokens)


def run_pagedllm(model, threads, n):
    out = subprocess.run([os.path.join(ROOT, "build", "pagedllm"), "run", "-m", model, "-p", PROMPT, "-n", str(n),
                          "--temp", "0", "--ignore-eos", "--stats", "json", "-t", str(threads), "-c", "1024"],
                         capture_output=True, text=True, check=True)
    stats = json.loads(out.stderr.strip().splitlines()[-1])
    t = stats["time"]
    return t["prompt_tokens_per_s"], t["generation_tokens_per_s"], t["prompt_tokens"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-m", default=os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("-t", type=int, default=2)
    ap.add_argument("-n", type=int, default=64)
    ap.add_argument("-r", type=int, default=3)
    a = ap.parse_args()
    results = {"llama.cpp": [], "pagedllm": []}
    for _ in range(a.r):
        results["llama.cpp"].append(run_llamacpp(a.m, a.t, a.n))
        results["pagedllm"].append(run_pagedllm(a.m, a.t, a.n))
    import llama_cpp
    print(f"model {os.path.basename(a.m)}, {a.t} threads, {results['pagedllm'][0][2]} prompt tokens, {a.n} generated, "
          f"{a.r} alternating repeats; llama.cpp = llama-cpp-python {llama_cpp.__version__}")
    print("| engine | prompt tokens/s | generation tokens/s |")
    print("|---|---|---|")
    for name, rows in results.items():
        pp = [r[0] for r in rows]
        tg = [r[1] for r in rows]
        print(f"| {name} | {statistics.mean(pp):.1f} ± {statistics.pstdev(pp):.1f} | "
              f"{statistics.mean(tg):.1f} ± {statistics.pstdev(tg):.1f} |")
    ours, theirs = results["pagedllm"], results["llama.cpp"]
    print(f"ratio pagedllm / llama.cpp: prompt {statistics.mean(r[0] for r in ours) / statistics.mean(r[0] for r in theirs):.2f}, "
          f"generation {statistics.mean(r[1] for r in ours) / statistics.mean(r[1] for r in theirs):.2f}")


if __name__ == "__main__":
    main()
