"""How does homology search scale with the reference set? Build, disk, load, query, memory.

    python benchmarks/search_scale.py --sizes 10000,100000 --out benchmarks/results/search_scale.json

Each size is a synthetic reference set: random sequences of 300-1500 nt, a quarter of
them genes of random codons (ATG ... stop), written as FASTA plus a TSV of descriptions
and built with `build_reference`. The queries are copies of references mutated to 90%
identity (half of them reverse-complemented) and shuffled sequences. Every size runs in
its own child process, so peak RSS (getrusage) is that size's alone.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from seqchat.homology.build import build_reference
from seqchat.homology.orf import reverse_complement_dna
from seqchat.homology.reference import load_reference
from seqchat.homology.search import search

BASES = np.frombuffer(b"ACGT", dtype=np.uint8)
CODONS = [a + b + c for a in "ACGT" for b in "ACGT" for c in "ACGT"]
SENSE = np.array([c.encode() for c in CODONS if c not in ("TAA", "TAG", "TGA")])


def write_inputs(folder: Path, size: int, seed: int) -> tuple[Path, Path, list[str]]:
    """FASTA and TSV of `size` references; returns their paths and 200 sample sequences."""
    rng = np.random.default_rng(seed)
    fasta, tsv = folder / "refs.fa", folder / "refs.tsv"
    samples: list[str] = []
    with fasta.open("w") as sequences, tsv.open("w") as annotations:
        annotations.write("id\tdescription\n")
        for i in range(size):
            if i % 4 == 0:
                body = b"".join(SENSE[rng.integers(0, len(SENSE), rng.integers(100, 500))])
                sequence = "ATG" + body.decode() + "TAA"
            else:
                sequence = BASES[rng.integers(0, 4, rng.integers(300, 1501))].tobytes().decode()
            sequences.write(f">r{i:07d}\n{sequence}\n")
            annotations.write(f"r{i:07d}\tsynthetic reference {i}\n")
            if i % max(1, size // 200) == 0:
                samples.append(sequence)
    return fasta, tsv, samples[:200]


def queries(samples: list[str], seed: int) -> list[tuple[str, str]]:
    rng = np.random.default_rng(seed + 1)
    out = []
    for i, sequence in enumerate(samples):
        letters = np.frombuffer(sequence.encode(), dtype=np.uint8).copy()
        changed = rng.random(len(letters)) < 0.1
        letters[changed] = BASES[rng.integers(0, 4, int(changed.sum()))]
        mutated = letters.tobytes().decode()
        out.append((f"m{i}", reverse_complement_dna(mutated) if i % 2 else mutated))
        if i % 4 == 0:
            rng.shuffle(letters)
            out.append((f"s{i}", letters.tobytes().decode()))
    return out


def measure(size: int, threads: int, seed: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(dir=ROOT / "benchmarks") as scratch:
        folder = Path(scratch)
        fasta, tsv, samples = write_inputs(folder, size, seed)
        started = time.perf_counter()
        build_reference([fasta], [tsv], folder / "ref", threads=threads)
        build_seconds = time.perf_counter() - started
        disk = sum(p.stat().st_size for p in (folder / "ref").iterdir())
        started = time.perf_counter()
        reference = load_reference(folder / "ref")
        load_seconds = time.perf_counter() - started
        batch = queries(samples, seed)
        started = time.perf_counter()
        results = list(search(batch, [reference], threads=threads))
        query_seconds = (time.perf_counter() - started) / len(batch)
        found = sum(bool(hits) for qid, hits in results if qid.startswith("m"))
        false = sum(bool(hits) for qid, hits in results if qid.startswith("s"))
        return {
            "references": size,
            "build_s": round(build_seconds, 1),
            "index_mb_on_disk": round(disk / 1e6, 1),
            "load_s": round(load_seconds, 4),
            "ms_per_query": round(1000 * query_seconds, 1),
            "queries": len(batch),
            "mutated_found": f"{found}/{sum(q.startswith('m') for q, _ in batch)}",
            "shuffled_with_hits": false,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "threads": threads,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated; e.g. add 1000000")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/search_scale.json")
    parser.add_argument("--single", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.single:
        print(json.dumps(measure(args.single, args.threads, args.seed)))
        return
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        child = subprocess.run(
            [sys.executable, __file__, "--single", str(size), "--threads", str(args.threads),
             "--seed", str(args.seed)],
            check=True, capture_output=True, text=True,
        )
        rows.append(json.loads(child.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
