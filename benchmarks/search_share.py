"""What homology search costs inside `seqchat annotate`: the same sequences annotated by the
default bundle with its reference searched and without (`--no-bundle-reference`), end to
end (start-up included), and the search alone (`seqchat search` on the bundle's reference).

    python benchmarks/search_share.py FASTA [--threads 2] [--repeat 2] \
        [--out benchmarks/results/search_share.json]

The share is (with - without) / with: the part of annotate's time per sequence that search
adds. Each setting keeps its fastest of `--repeat` runs (a busy machine only slows runs).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

from seqchat.loading import bundle_references
from seqchat.bundle import load_bundle
from seqchat.io.sequences import read_records


def seconds(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def fastest(command: list[str], repeat: int) -> float:
    return min(seconds(command) for _ in range(repeat))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("fasta", type=Path)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/search_share.json"))
    args = parser.parse_args()
    n = sum(1 for _ in read_records([str(args.fasta)]))
    [reference] = bundle_references(load_bundle("default"), args.threads)  # built once here
    annotate = ["seqchat", "annotate", "-q", "-t", str(args.threads), str(args.fasta)]
    with_search = fastest(annotate, args.repeat)
    without_search = fastest([*annotate, "--no-bundle-reference"], args.repeat)
    search_alone = fastest(
        ["seqchat", "search", "-t", str(args.threads), str(args.fasta), "-r", str(reference)],
        args.repeat,
    )
    result = {
        "sequences": n,
        "threads": args.threads,
        "annotate_with_search_s_per_seq": with_search / n,
        "annotate_without_search_s_per_seq": without_search / n,
        "search_alone_s_per_seq": search_alone / n,
        "share_of_annotate": (with_search - without_search) / with_search,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
