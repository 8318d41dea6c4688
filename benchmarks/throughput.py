"""Throughput of `seqchat annotate` against the seeds' PyTorch inference path and llama.cpp.

    python benchmarks/throughput.py --repeat 2 --out benchmarks/results/throughput.json

Reports sequences/s and generated tokens/s for
  (a) seqchat's pipeline (Annotator: encoder -> projector -> GGUF runtime, `--parallel P`);
  (b) PyTorch encoder -> projector -> transformers `generate(inputs_embeds=...)` on the LLM
      loaded from the same GGUF, one sequence at a time (GeneChat's inference script);
  (c) the same in padded batches of P;
  (d) llama.cpp's own aggregate generation rate on the same GGUF, P parallel sequences,
      the same number of generated tokens, no encoder (the ceiling);
and the ratios a/b, a/c, a/d. Greedy decoding, 2 threads by default, and every run generates
exactly 64 new tokens per sequence (EOS ignored, as the ceiling (d) must), so that the four
runs do the same generation work and the ratios compare the pipelines, not answer lengths.
`--stop-at-eos` stops (a), (b) and (c) at the end-of-answer token instead, as `seqchat annotate`
does; (d) still generates 64 tokens, so a/d then also measures how short the answers are.
(a), (c) and (d) run on the same sequences; (b) runs on the first `--torch-sequences` of them
because it is slow (rates are per second, so only the length mix can bias a/b).
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np
import torch

from seqchat.annotate import Annotator
from seqchat.loading import load_runtime_pool
from seqchat.bundle import load_bundle
from seqchat.llm.prompt import layout_for
from seqchat.llm.runtime import DecodingSettings, SoftPrompt
from seqchat.io.sequences import SequenceRecord, canonical_sequence
from seqchat.train.chain import chain_from_bundle


def benchmark_records(data_dir: Path, n: int, seed: int) -> list[SequenceRecord]:
    """n sequences of 100 nt to 3 kb, half yeast genes and half ncRNAs where possible."""
    pool = []
    for name in ("yeast_sgd", "rfam_nrc"):
        for line in (data_dir / name / "train.jsonl").read_text().splitlines():
            row = json.loads(line)
            if 100 <= len(row["sequence"]) <= 3000:
                pool.append((row["id"], canonical_sequence(row["sequence"])))
    random.Random(seed).shuffle(pool)
    return [SequenceRecord(i, "", s, "bench", k) for k, (i, s) in enumerate(pool[:n])]


def rate(n_sequences: int, n_tokens: int, seconds: float) -> dict[str, float]:
    return {
        "sequences": n_sequences,
        "tokens": n_tokens,
        "seconds": round(seconds, 3),
        "sequences_per_s": round(n_sequences / seconds, 4),
        "tokens_per_s": round(n_tokens / seconds, 3),
    }


def run_seqchat(
    bundle: str, records: list[SequenceRecord], parallel: int, threads: int, tokens: int, stop_at_eos: bool
) -> dict:
    decoding = DecodingSettings(max_new_tokens=tokens, ignore_eos=not stop_at_eos)
    with Annotator.load(bundle, threads=threads, parallel=parallel, decoding=decoding) as annotator:
        started = time.perf_counter()
        generated = sum(a.n_tokens for a in annotator.annotate(records))
        return rate(len(records), generated, time.perf_counter() - started)


def _torch_inputs(chain, layout, soft: torch.Tensor) -> torch.Tensor:
    embed = chain.llm.get_input_embeddings()
    prefix = embed(torch.tensor(layout.prefix_ids))
    suffix = embed(torch.tensor(layout.suffix_ids))
    return torch.cat([prefix, soft, suffix])


@torch.inference_mode()
def run_torch(
    bundle_name: str, records: list[SequenceRecord], batch: int, tokens: int, threads: int, stop_at_eos: bool
) -> dict:
    torch.set_num_threads(threads)  # (a) leaves torch on one thread beside its llama.cpp contexts
    bundle = load_bundle(bundle_name)
    chain, vocabulary = chain_from_bundle(bundle)
    layout = layout_for(vocabulary, bundle.prompt, bundle.prompt.question)
    eos = vocabulary.eos_id
    generated = 0
    started = time.perf_counter()
    for start in range(0, len(records), batch):
        group = records[start : start + batch]
        softs = chain.soft_tokens([r.sequence for r in group])
        rows = [_torch_inputs(chain, layout, s) for s in softs]
        width = max(r.shape[0] for r in rows)
        embeds = torch.zeros(len(rows), width, rows[0].shape[1])
        mask = torch.zeros(len(rows), width, dtype=torch.long)
        for i, row in enumerate(rows):  # left padding, as generation wants
            embeds[i, width - row.shape[0] :] = row
            mask[i, width - row.shape[0] :] = 1
        out = chain.llm.generate(
            inputs_embeds=embeds, attention_mask=mask, max_new_tokens=tokens,
            min_new_tokens=0 if stop_at_eos else tokens, do_sample=False, eos_token_id=eos, pad_token_id=eos,
        )
        for sequence in out.tolist():
            generated += next((i for i, t in enumerate(sequence) if t == eos), len(sequence))
    return rate(len(records), generated, time.perf_counter() - started)


def run_llama_ceiling(bundle_name: str, n_sequences: int, parallel: int, threads: int, tokens: int) -> dict:
    """The same llama.cpp contexts as (a) (one per thread, the slots split among them)."""
    bundle = load_bundle(bundle_name)
    pool = load_runtime_pool(bundle, on_gpu=False, threads=threads, parallel=parallel, n_ctx_per_slot=bundle.n_ctx_per_slot)
    try:
        layout = layout_for(pool.vocabulary, bundle.prompt, bundle.prompt.question)
        empty = np.zeros((0, pool.runtimes[0].n_embd), dtype=np.float32)
        prompts = [SoftPrompt(f"s{i}", empty, layout.suffix_ids) for i in range(n_sequences)]
        settings = DecodingSettings(max_new_tokens=tokens, ignore_eos=True)
        started = time.perf_counter()
        generated = sum(len(g.token_ids) for g in pool.generate(layout.prefix_ids, prompts, settings))
        return rate(n_sequences, generated, time.perf_counter() - started)
    finally:
        pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--bundle", default="default")
    parser.add_argument("--sequences", type=int, default=256)
    parser.add_argument("--torch-sequences", type=int, default=32)
    parser.add_argument("--parallel", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--stop-at-eos", action="store_true", help="(a), (b), (c) stop at the end of the answer")
    parser.add_argument("--repeat", type=int, default=1, help="run each N times, keep the fastest")
    parser.add_argument("--skip", default="", help="comma list of a,b,c,d to skip")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/throughput.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    skip = set(args.skip.split(","))
    records = benchmark_records(args.data, args.sequences, seed=0)
    subset = records[: args.torch_sequences]
    runs = {
        "d_llama_cpp_ceiling": lambda: run_llama_ceiling(args.bundle, len(records), args.parallel, args.threads, args.tokens),
        "a_seqchat": lambda: run_seqchat(args.bundle, records, args.parallel, args.threads, args.tokens, args.stop_at_eos),
        "b_torch_one_at_a_time": lambda: run_torch(args.bundle, subset, 1, args.tokens, args.threads, args.stop_at_eos),
        "c_torch_batched": lambda: run_torch(args.bundle, records, args.parallel, args.tokens, args.threads, args.stop_at_eos),
    }
    runs = {name: run for name, run in runs.items() if name[0] not in skip}
    # Round-robin repeats, keeping each run's fastest: on a shared machine the speed drifts
    # by 20% or more over minutes, and the slow phases should not land on one run only.
    results: dict[str, dict] = {}
    for _ in range(args.repeat):
        for name, run in runs.items():
            result = run()
            print(name[0], result, flush=True)
            if name not in results or result["seconds"] < results[name]["seconds"]:
                results[name] = result
    ratios = {}
    a = results.get("a_seqchat", {}).get("tokens_per_s")
    for key, name in (("b_torch_one_at_a_time", "a/b"), ("c_torch_batched", "a/c"), ("d_llama_cpp_ceiling", "a/d")):
        if a and key in results:
            ratios[name] = round(a / results[key]["tokens_per_s"], 3)
    report = {"settings": vars(args) | {"data": str(args.data), "out": str(args.out)}, "results": results, "ratios_tokens_per_s": ratios}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(ratios))


if __name__ == "__main__":
    main()
