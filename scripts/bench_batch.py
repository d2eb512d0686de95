#!/usr/bin/env python3
"""Benchmark of `pagedllm batch` (issue 5's acceptance figures).

Pushes N prompts of mixed lengths through the continuous-batching scheduler at a fixed --kv-mem and prints, per
configuration: throughput, peak KV usage, peak concurrent sequences, waste %, K/V saved by sharing, prefix-cache hit
rate and preemptions:

  paged / contiguous     the same greedy requests; contiguous reserves a full context (-c) per sequence
  n=4                    every request asks for 4 samples that share the prompt's blocks
  system prompt off/on   every prompt starts with the same ~200-token system prompt; prefix cache off, then on
  tight kv-mem           paged with a quarter of the memory: preemption (recompute) must change no result

It also checks that every greedy configuration produced identical completions, and that batch's greedy output
equals `pagedllm run`'s for the first few prompts.

Usage: scripts/bench_batch.py [--binary build/pagedllm] [--model FILE] [--requests 200] [--kv-mem 4M] [-c 512]
                              [--block-size 16] [--min-new 16] [--max-new 96] [--max-seqs 256] [--threads N]
                              [--run-checks 4]
"""
import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile

SENTENCES = [
    "Once upon a time there was a little girl named Lily.",
    "She loved to play outside in the park with her red ball.",
    "One day her brother Tom found a big box under the old tree.",
    "The sun was hot and the birds were singing in the tall trees.",
    "Their mother made a cake and they ate it together in the garden.",
    "A small dog ran after the cat and barked very loudly.",
    "The wind blew the leaves across the road near the river.",
    "Ben wanted to build a tower of blocks as high as the sky.",
    "At night the moon was bright and the stars looked like tiny lights.",
    "The old man told them a story about a dragon and a brave knight.",
]

SYSTEM_WORDS = ("You are a kind and patient storyteller for small children. You always answer with a short, happy "
                "story that uses simple words, friendly animals and a clear ending. You never use scary words. ")


def parse_size(text):
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    if text[-1].upper() in units:
        return int(float(text[:-1]) * units[text[-1].upper()])
    return int(text)


def run_batch(args, requests, name, extra):
    path_in = os.path.join(args.work, name + ".jsonl")
    path_out = os.path.join(args.work, name + ".out.jsonl")
    with open(path_in, "w") as f:
        for r in requests:
            f.write(json.dumps(r) + "\n")
    command = [args.binary, "batch", "-m", args.model, "-i", path_in, "-o", path_out, "--stats", "json",
               "--progress", "off", "-c", str(args.ctx), "--kv-mem", extra.pop("kv_mem", args.kv_mem),
               "--max-seqs", str(args.max_seqs), "--block-size", str(args.block_size), "--ignore-eos"]
    if args.threads:
        command += ["-t", str(args.threads)]
    for key, value in extra.items():
        command += ["--" + key.replace("_", "-"), str(value)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(command, capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"{name}: pagedllm batch failed:\n{done.stderr}")
    summary = json.loads(done.stderr.strip().splitlines()[-1])
    # CPU seconds of the whole process (model load included): a figure that other load on the machine disturbs
    # less than wall time does.
    summary["cpu_seconds"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    with open(path_out) as f:
        records = [json.loads(line) for line in f]
    errors = [r for r in records if "error" in r]
    if errors:
        sys.exit(f"{name}: {len(errors)} error records, first: {errors[0]['error']}")
    return summary, records


def completions(records):
    return [[(c["tokens"], c["finish_reason"]) for c in r["completions"]] for r in records]


def row(name, s):
    kv = s["kv"]
    return (f"| {name} | {s['requests']} | {s['generated_tokens']} | {s['seconds']:.2f} | {s['cpu_seconds']:.2f} | "
            f"{s['generated_tokens_per_s']:.1f} | {s['total_tokens_per_s']:.1f} | "
            f"{kv['peak_blocks']}/{kv['blocks_total']} ({kv['peak_percent']:.0f}%) | {kv['peak_running_sequences']} | "
            f"{kv['waste_percent']:.2f} | {kv['sharing_saved_percent']:.1f} | "
            f"{100 * kv['prefix_hit_rate']:.1f} | {kv['preemptions']} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    parser.add_argument("--binary", default=os.path.join(here, "..", "build", "pagedllm"))
    parser.add_argument("--model", default=os.path.join(here, "..", "..", "shared", "models", "stories260K.gguf"))
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--kv-mem", default="4M")
    parser.add_argument("-c", "--ctx", type=int, default=512)
    parser.add_argument("--min-new", type=int, default=16)
    parser.add_argument("--max-new", type=int, default=96)
    parser.add_argument("--max-seqs", type=int, default=256)
    parser.add_argument("--block-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--run-checks", type=int, default=4, help="prompts compared with `pagedllm run`")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    args.work = tempfile.mkdtemp(prefix="pagedllm_bench_batch_")

    rng = random.Random(args.seed)
    prompts = [" ".join(rng.choice(SENTENCES) for _ in range(rng.randint(1, 6))) for _ in range(args.requests)]
    greedy = [{"id": i, "prompt": p, "max_tokens": rng.randint(args.min_new, args.max_new), "temperature": 0}
              for i, p in enumerate(prompts)]

    # A system prompt of at least 200 tokens for this model's tokenizer.
    system = SYSTEM_WORDS
    while True:
        probe, records = run_batch(args, [{"id": 0, "prompt": system, "max_tokens": 1}], "probe", {})
        if records[0]["prompt_tokens"] >= 200:
            system_tokens = records[0]["prompt_tokens"]
            break
        system += SYSTEM_WORDS
    with_system = [dict(r, prompt=system + "\n\n" + r["prompt"]) for r in greedy]
    samples = [dict(r, n=4, temperature=0.8, seed=1000 + r["id"]) for r in greedy[: max(1, args.requests // 4)]]
    tight = str(parse_size(args.kv_mem) // 4)

    runs = [
        ("paged", greedy, {"kv_layout": "paged", "prefix_cache": "off"}),
        ("contiguous", greedy, {"kv_layout": "contiguous", "prefix_cache": "off"}),
        ("paged, n=4", samples, {"prefix_cache": "off"}),
        ("system prompt, prefix cache off", with_system, {"prefix_cache": "off"}),
        ("system prompt, prefix cache on", with_system, {"prefix_cache": "on"}),
        ("paged, kv-mem / 4", greedy, {"prefix_cache": "off", "kv_mem": tight}),
    ]
    results = {}
    for name, requests, extra in runs:
        print(f"running: {name} ({len(requests)} requests)", file=sys.stderr)
        results[name] = run_batch(args, requests, name.replace(" ", "_").replace(",", "").replace("/", ""), dict(extra))

    print(f"model {os.path.basename(args.model)}, --kv-mem {args.kv_mem}, -c {args.ctx}, max-seqs {args.max_seqs}, "
          f"block size {args.block_size}, "
          f"new tokens {args.min_new}..{args.max_new} per request (--ignore-eos), system prompt {system_tokens} tokens")
    print()
    print("| run | requests | generated | seconds | CPU s | gen tok/s | all tok/s | peak KV blocks | peak seqs | "
          "waste % | sharing saved % | prefix hit % | preemptions |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, _, _ in runs:
        print(row(name, results[name][0]))
    print()

    paged, contiguous = results["paged"][0], results["contiguous"][0]
    print(f"paged vs contiguous: peak concurrent sequences {paged['kv']['peak_running_sequences']} vs "
          f"{contiguous['kv']['peak_running_sequences']} "
          f"({paged['kv']['peak_running_sequences'] / max(1, contiguous['kv']['peak_running_sequences']):.1f}x), "
          f"throughput {paged['generated_tokens_per_s']:.1f} vs {contiguous['generated_tokens_per_s']:.1f} gen tok/s "
          f"({paged['generated_tokens_per_s'] / max(1e-9, contiguous['generated_tokens_per_s']):.1f}x)")

    same = lambda a, b: completions(results[a][1]) == completions(results[b][1])
    checks = [("paged", "contiguous"), ("paged", "paged, kv-mem / 4"),
              ("system prompt, prefix cache off", "system prompt, prefix cache on")]
    ok = True
    for a, b in checks:
        equal = same(a, b)
        ok = ok and equal
        print(f"identical completions, {a} vs {b}: {'yes' if equal else 'NO'}")

    # batch vs run: greedy text of the first prompts.
    mismatches = 0
    for r, record in list(zip(greedy, results["paged"][1]))[: args.run_checks]:
        command = [args.binary, "run", "-m", args.model, "-p", r["prompt"], "-n", str(r["max_tokens"]), "--temp", "0",
                   "--ignore-eos", "-c", str(args.ctx), "--stats", "none"]
        if args.threads:
            command += ["-t", str(args.threads)]
        single = subprocess.run(command, capture_output=True, text=True)
        if single.stdout != record["completions"][0]["text"] + "\n":
            mismatches += 1
    print(f"batch vs run, greedy text of the first {min(args.run_checks, len(greedy))} prompts: {mismatches} differ")
    ok = ok and mismatches == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
