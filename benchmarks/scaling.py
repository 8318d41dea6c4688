"""Does `seqchat annotate` stream? Wall time and peak memory from 1,000 to 100,000 sequences.

    python benchmarks/scaling.py --out benchmarks/results/scaling.json
    python benchmarks/scaling.py --compiled --out benchmarks/results/scaling-compiled.json

Each size is a gzipped FASTA of random 100-600 nt sequences, annotated by the real CLI in
its own process with the tests' tiny bundle (a 2-layer GGUF and a small RNA-FM encoder,
built on the spot), so the run measures seqchat's own machinery (reading, encoding in
chunks, slots, ordering, writing) rather than a large model. If nothing holds the whole
input, seconds per sequence stay flat and peak RSS does not grow with the input.
`--compiled` first compiles the tiny bundle (`seqchat models compile`), so the encoder runs
in onnxruntime, as the shipped bundles do on a CPU.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from tinymodels import write_tiny_bundle


def write_fasta_gz(path: Path, n: int, seed: int) -> None:
    rng = random.Random(seed)
    with gzip.open(path, "wt", compresslevel=1) as handle:
        for i in range(n):
            sequence = "".join(rng.choices("ACGU", k=rng.randint(100, 600)))
            handle.write(f">r{i:06d}\n{sequence}\n")


def annotate(bundle: Path, fasta: Path, out: Path, threads: int, tokens: int) -> dict[str, float]:
    """Run the CLI in a child process; its wall time and its own peak RSS (from wait4)."""
    command = [
        sys.executable, "-m", "seqchat.cli", "annotate", str(fasta), "-m", str(bundle),
        "-o", str(out), "-t", str(threads), "--max-new-tokens", str(tokens), "-q",
    ]
    started = time.perf_counter()
    child = subprocess.Popen(command)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"seqchat failed on {fasta}")
    return {"seconds": round(seconds, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tokens", type=int, default=8)
    parser.add_argument("--compiled", action="store_true", help="compile the tiny bundle first")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/scaling.json")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        bundle = write_tiny_bundle(work / "tiny")
        if args.compiled:
            compile_command = [sys.executable, "-m", "seqchat.cli", "models", "compile", str(bundle)]
            subprocess.run(compile_command, check=True)
        for n in map(int, args.sizes.split(",")):
            fasta = work / f"n{n}.fa.gz"
            write_fasta_gz(fasta, n, seed=n)
            measured = annotate(bundle, fasta, work / f"n{n}.tsv", args.threads, args.tokens)
            with open(work / f"n{n}.tsv") as table:
                rows = sum(1 for line in table if not line.startswith("#")) - 1
            if rows != n:
                raise SystemExit(f"{n} sequences in, {rows} rows out")
            row = {"sequences": n, **measured, "ms_per_sequence": round(1000 * measured["seconds"] / n, 3)}
            results.append(row)
            print(row, flush=True)
    settings = {"threads": args.threads, "max_new_tokens": args.tokens, "compiled": args.compiled}
    report = {"settings": settings, "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
