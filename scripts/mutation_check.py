#!/usr/bin/env python3
"""Mutation check: does the test suite notice one-line bugs in the core?

Each mutant below replaces one exact snippet of a source file with a plausible wrong version (an off-by-one, a
swapped comparison, a missing term). For each, the script builds the project in a scratch copy of the repository
(a git worktree of HEAD in build-mutants/, CUDA off), runs the tests named for it, and reports whether they failed
(the mutant is "killed") or passed (it "survived": a bug the suite would let through).

    scripts/mutation_check.py [--only NAME[,NAME...]] [--jobs N] [--keep]

Prints one line per mutant and a summary table; exits 1 when any mutant survived or a snippet no longer matches
the source (the list must follow the code). Every mutant builds only what its change touches, so a full run takes
a few minutes per mutant on a small machine.
"""
import argparse
import os
import shutil
import subprocess
import sys
import time

# name, file, original snippet, mutated snippet, ctest regex, what the bug would be
MUTANTS = [
    ("cow-shared-check", "engine/kv_cache.cpp",
     "return ref_count_[b] > 1 || (prefix_caching_ && registered_[b]);",
     "return ref_count_[b] > 2 || (prefix_caching_ && registered_[b]);",
     "test_kv_cache|test_scheduler|test_run_cli",
     "copy-on-write skipped for a block shared by two sequences"),
    ("fork-no-ref", "engine/kv_cache.cpp",
     "for (int32_t block : copy.blocks) ++ref_count_[static_cast<size_t>(block)];",
     "for (int32_t block : copy.blocks) (void)ref_count_[static_cast<size_t>(block)];",
     "test_kv_cache|test_scheduler",
     "fork shares blocks without counting the new holder"),
    ("release-early", "engine/kv_cache.cpp",
     "if (--ref > 0) return;",
     "if (--ref > 1) return;",
     "test_kv_cache|test_scheduler",
     "a block returns to the pool while one sequence still holds it"),
    ("prefix-hash-unchained", "engine/kv_cache.cpp",
     "uint64_t h = mix64(parent_hash + 0x9e3779b97f4a7c15ULL);",
     "uint64_t h = mix64(0x9e3779b97f4a7c15ULL);",
     "test_kv_cache|test_scheduler|test_batch_cli",
     "a block's hash ignores what precedes it: equal blocks after different prefixes match"),
    ("prefix-takes-last-token", "engine/kv_cache.cpp",
     "const int candidates = static_cast<int>((prompt_tokens.size() - 1) / static_cast<size_t>(block_size_));",
     "const int candidates = static_cast<int>(prompt_tokens.size() / static_cast<size_t>(block_size_));",
     "test_kv_cache|test_scheduler",
     "a fully cached prompt leaves no token to compute its logits from"),
    ("lru-evicts-newest", "engine/kv_cache.cpp",
     "    block = lru_head_;\n",
     "    block = lru_tail_;\n",
     "test_kv_cache",
     "the prefix cache evicts the most recently freed block first"),
    ("top-p-boundary", "engine/sampler.cpp",
     "if (cumulative >= p) {",
     "if (cumulative > p) {",
     "test_sampler",
     "top-p keeps one candidate too many when the mass reaches p exactly"),
    ("top-k-plus-one", "engine/sampler.cpp",
     "candidates.resize(static_cast<size_t>(k));",
     "candidates.resize(static_cast<size_t>(k) + 1);",
     "test_sampler",
     "top-k keeps k + 1 candidates"),
    ("min-p-threshold", "engine/sampler.cpp",
     "const float threshold = max + std::log(p);",
     "const float threshold = max - std::log(p);",
     "test_sampler",
     "min-p compares against the wrong side of the maximum"),
    ("repeat-penalty-sign", "engine/sampler.cpp",
     "logit = logit <= 0.0f ? logit * params.repeat_penalty : logit / params.repeat_penalty;",
     "logit = logit <= 0.0f ? logit / params.repeat_penalty : logit * params.repeat_penalty;",
     "test_sampler",
     "the repetition penalty rewards repeated tokens"),
    ("softmax-rescale", "kernels/common/online_softmax.h",
     "const float factor = state.max == -INFINITY ? 0.0f : expf(state.max - tile_max);",
     "const float factor = state.max == -INFINITY ? 0.0f : expf(tile_max - state.max);",
     "test_attention|test_golden",
     "the online softmax rescales old partial sums the wrong way when the maximum rises"),
    ("softmax-merge", "kernels/common/online_softmax.h",
     "a.sum = a.sum * scale_a + b.sum * scale_b;",
     "a.sum = a.sum * scale_a + b.sum;",
     "test_attention",
     "merging two partial softmaxes forgets to rescale the second sum"),
    ("causal-off-by-one", "kernels/cpu/attention.cpp",
     "const int visible = std::min(n_keys, position - block_start + 1);",
     "const int visible = std::min(n_keys, position - block_start + 2);",
     "test_attention|test_golden",
     "prefill attention sees one key in the future"),
    ("preempt-oldest", "engine/scheduler.cpp",
     "      Sequence& victim = *running_.back();",
     "      Sequence& victim = *running_.front();",
     "test_scheduler",
     "preemption takes the oldest running sequence instead of the youngest"),
    ("admission-ignores-blocks", "engine/scheduler.cpp",
     "if (admission_blocks(sequence) + watermark_blocks_ > cache_.free_blocks() - committed_blocks) return false;",
     "if (admission_blocks(sequence) + watermark_blocks_ > cache_.free_blocks() + committed_blocks) return false;",
     "test_scheduler",
     "admission forgets the blocks running sequences still need"),
    ("max-seqs-off-by-one", "engine/scheduler.cpp",
     "if (seats + static_cast<int>(sequence.samples.size()) > config_.max_seqs) return false;",
     "if (seats + static_cast<int>(sequence.samples.size()) > config_.max_seqs + 1) return false;",
     "test_scheduler|test_batch_cli",
     "one sequence more than --max-seqs runs at once"),
    ("session-reuses-last-token", "engine/scheduler.cpp",
     "const size_t comparable = std::min(cached.size(), sequence->tokens.size() - 1);",
     "const size_t comparable = std::min(cached.size(), sequence->tokens.size());",
     "test_chat_session",
     "a chat turn whose prompt is wholly cached has no token left to compute"),
    ("trim-target", "engine/chat_session.cpp",
     "const int target = limit - cap / 4;",
     "const int target = limit;",
     "test_chat_session",
     "trimming the conversation stops at the limit, so the next turn trims again"),
    ("detokenizer-split-utf8", "tokenizer/streaming_detokenizer.cpp",
     "const size_t complete = unicode::complete_prefix_length(pending_);",
     "const size_t complete = pending_.size();",
     "test_tokenizer",
     "the streaming detokenizer hands out half a UTF-8 character"),
    ("detokenizer-flush-drops", "tokenizer/streaming_detokenizer.cpp",
     "  rest.swap(pending_);",
     "  pending_.clear();",
     "test_tokenizer",
     "the bytes still pending at the end of a sample are lost"),
    ("qk-norm-wrong-gain", "engine/llama_forward.cpp",
     "backend.rms_norm(k, l.attn_k_norm, k,",
     "backend.rms_norm(k, l.attn_q_norm, k,",
     "test_golden|test_model_families",
     "qwen3's key heads are normalized with the query heads' gains"),
    ("qwen2-rope-layout", "model_loader/model_config.cpp",
     '{"qwen2", RopeLayout::Neox,',
     '{"qwen2", RopeLayout::Norm,',
     "test_golden|test_model_config",
     "qwen2 rotates adjacent pairs like llama instead of the NEOX halves"),
    ("panel-odd-chunk", "kernels/cpu/matmul_avx2_block32.cpp",
     "        odd[r] = accumulate_u8_i8(odd[r], q1, broadcast_4_bytes(a + 4));",
     "        odd[r] = accumulate_u8_i8(odd[r], q1, broadcast_4_bytes(a));",
     "test_matmul",
     "the prefill panel pairs every odd chunk of weights with the even chunk's activations"),
    ("row-min-from-scale", "kernels/cpu/matmul_avx2_block32.cpp",
     "weight_mins = gather_halves(rows, b, &WeightBlock::m);",
     "weight_mins = gather_halves(rows, b, &WeightBlock::d);",
     "test_matmul",
     "the decode kernel of Q4_1/Q5_1 takes each block's min from its scale field"),
    ("kquant-correction-pair", "kernels/cpu/matmul_avx2_kquants.cpp",
     "static_cast<uint16_t>(w.corrections[2 * p + 1])",
     "static_cast<uint16_t>(w.corrections[2 * p])",
     "test_matmul",
     "the K-quant panel uses one 16-element group's coefficient for both groups of a pair (Q6_K offsets)"),
]


def run(command, cwd, log, check=True):
    with open(log, "ab") as out:
        result = subprocess.run(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed (see {log})")
    return result.returncode


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help="comma-separated mutant names")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--keep", action="store_true", help="keep build-mutants/ afterwards")
    args = parser.parse_args()

    root = subprocess.check_output(["git", "rev-parse", "--show-toplevel"], text=True).strip()
    selected = MUTANTS
    if args.only:
        names = set(args.only.split(","))
        unknown = names - {m[0] for m in MUTANTS}
        if unknown:
            sys.exit(f"unknown mutants: {', '.join(sorted(unknown))}")
        selected = [m for m in MUTANTS if m[0] in names]

    work = os.path.join(root, "build-mutants")
    tree = os.path.join(work, "tree")
    build = os.path.join(work, "build")
    log = os.path.join(work, "log.txt")
    os.makedirs(work, exist_ok=True)
    if not os.path.isdir(tree):
        subprocess.run(["git", "worktree", "add", "--detach", tree, "HEAD"], cwd=root, check=True,
                       stdout=subprocess.DEVNULL)
    else:
        subprocess.run(["git", "checkout", "--detach", "--force", subprocess.check_output(
            ["git", "rev-parse", "HEAD"], cwd=root, text=True).strip()], cwd=tree, check=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # The tree needs the default model and ../shared as the real checkout has them.
    models = os.path.join(tree, "models")
    os.makedirs(models, exist_ok=True)
    for name in os.listdir(os.path.join(root, "models")):
        if name.endswith(".gguf") and not os.path.exists(os.path.join(models, name)):
            os.symlink(os.path.join(root, "models", name), os.path.join(models, name))
    shared = os.path.abspath(os.path.join(root, "..", "shared"))
    if not os.path.exists(os.path.join(build, "CMakeCache.txt")):
        run(["cmake", "-S", tree, "-B", build, "-G", "Ninja", "-DPAGEDLLM_CUDA=OFF",
             f"-DPAGEDLLM_SHARED_DIR={shared}"], root, log)
    print(f"building the unmutated tree in {build} ...", flush=True)
    run(["ninja", "-C", build, f"-j{args.jobs}"], root, log)

    results = []
    for name, path, original, mutated, tests, what in selected:
        source = os.path.join(tree, path)
        text = open(source, encoding="utf-8").read()
        if text.count(original) != 1:
            results.append((name, "STALE", 0.0, what))
            print(f"{name:28} STALE: the snippet is not in {path} exactly once", flush=True)
            continue
        start = time.time()
        try:
            open(source, "w", encoding="utf-8").write(text.replace(original, mutated))
            if run(["ninja", "-C", build, f"-j{args.jobs}"], root, log, check=False) != 0:
                outcome = "killed (build)"
            else:
                code = run(["ctest", "--test-dir", build, "-R", tests, "-j", str(args.jobs), "--timeout", "600"],
                           root, log, check=False)
                outcome = "killed" if code != 0 else "SURVIVED"
        finally:
            open(source, "w", encoding="utf-8").write(text)
        seconds = time.time() - start
        results.append((name, outcome, seconds, what))
        print(f"{name:28} {outcome:16} {seconds:6.0f} s  {what}", flush=True)

    run(["ninja", "-C", build, f"-j{args.jobs}"], root, log, check=False)  # leave the build unmutated
    if not args.keep:
        subprocess.run(["git", "worktree", "remove", "--force", tree], cwd=root, check=False)
        shutil.rmtree(work, ignore_errors=True)

    print("\n| mutant | file | outcome | the bug |\n|---|---|---|---|")
    files = {m[0]: m[1] for m in MUTANTS}
    for name, outcome, _, what in results:
        print(f"| {name} | {files[name]} | {outcome} | {what} |")
    bad = [r for r in results if r[1] in ("SURVIVED", "STALE")]
    print(f"\n{len(results) - len(bad)} of {len(results)} mutants killed")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
