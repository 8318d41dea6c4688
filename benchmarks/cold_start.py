"""Cold start: seconds from launching `seqchat annotate` on a one-sequence FASTA (the first
record of examples/genes.fasta) to its first output row, for the shipped bundle as it is
(compiled: ONNX encoder) and for a copy without its compiled graphs (PyTorch encoder).

    python benchmarks/cold_start.py --runs 5 --out benchmarks/results/cold_start.json

Each run is a fresh process reading from a pipe; the median of `--runs` is reported.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import yaml

from seqchat.bundle import CONFIG_NAME, load_bundle
from seqchat.io.sequences import read_records


def first_row_seconds(bundle: str, fasta: Path, threads: int) -> tuple[float, float]:
    """(seconds to the first output row, seconds to exit) of one fresh process."""
    started = time.perf_counter()
    process = subprocess.Popen(
        ["seqchat", "annotate", str(fasta), "-m", bundle, "-t", str(threads), "-q"],
        stdout=subprocess.PIPE, text=True,
    )
    assert process.stdout is not None
    first_row = None
    for line in process.stdout:
        if not line.startswith("#") and not line.startswith("id\t") and first_row is None:
            first_row = time.perf_counter() - started
    if process.wait() != 0 or first_row is None:
        raise SystemExit(f"seqchat annotate -m {bundle} failed")
    return first_row, time.perf_counter() - started


def without_graphs(bundle_name: str, directory: Path) -> Path:
    """A copy of the bundle that names no compiled graphs (the PyTorch path)."""
    bundle = load_bundle(bundle_name)
    copy = directory / f"{bundle.name}-pytorch"
    shutil.copytree(bundle.root, copy, ignore=shutil.ignore_patterns("compiled"))
    config = yaml.safe_load((copy / CONFIG_NAME).read_text())
    config.pop("compiled", None)
    (copy / CONFIG_NAME).write_text(yaml.safe_dump(config, sort_keys=False))
    return copy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bundle", default="default")
    parser.add_argument("--fasta", type=Path, default=Path("examples/genes.fasta"))
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/cold_start.json"))
    args = parser.parse_args()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        record = next(read_records([str(args.fasta)]))
        fasta = Path(scratch) / "one.fa"
        fasta.write_text(f">{record.id}\n{record.sequence}\n")
        pytorch = without_graphs(args.bundle, Path(scratch))
        paths = {"compiled": args.bundle, "pytorch": str(pytorch)}
        for name, bundle in paths.items():
            first_row_seconds(bundle, fasta, args.threads)  # page the files in
            runs = [first_row_seconds(bundle, fasta, args.threads) for _ in range(args.runs)]
            results[name] = {
                "first_row_s": round(statistics.median(r[0] for r in runs), 3),
                "exit_s": round(statistics.median(r[1] for r in runs), 3),
            }
            print(name, results[name], flush=True)
    settings = vars(args) | {"out": str(args.out), "fasta": str(args.fasta)}
    report = {"settings": settings, "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
