#!/usr/bin/env python3
"""Merge the outputs of `seqchat annotate --shard I/N` runs into one table, in input order.

Shard I holds input records I, I+N, I+2N, ... in input order, so input record k is row
k // N of shard k % N: the merge takes one row from each shard in turn. The shards may be
given in any order: shard I is the one that starts with input record I. Every row's id is
checked against the input FASTA, so a missing, extra or misplaced row is an error rather
than a silently wrong table, and every shard must have been made with the same bundle,
weights, prompt and decoding. The merged provenance header is written once.

    merge_shards.py --fasta genes.fa -o annotations.tsv shards/*.tsv

The output format follows the output's suffix (.tsv, .jsonl or .json). Runs as a plain
script (Nextflow's bin/) or from a Snakemake rule's `script:` directive, with inputs
`shards` and `fasta` and one output. Exit codes: 0 merged, 1 error, 2 usage.
"""

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from seqchat.errors import SeqchatError
from seqchat.io.sequences import read_records
from seqchat.io.tables import read_table
from seqchat.io.writers import ANNOTATION_COLUMNS, open_writer, partial_path

_SHARD = re.compile(r"--shard[= ](\d+)/(\d+)")


class MergeError(SeqchatError):
    """The shards do not make up the input."""


def shard_of(provenance: dict[str, str]) -> tuple[int, int] | None:
    """(I, N) from the `--shard I/N` of the command that wrote a table, if it shows one."""
    found = _SHARD.findall(provenance.get("command", ""))
    return (int(found[0][0]), int(found[0][1])) if len(found) == 1 else None


def output_format(path: str) -> str:
    suffix = Path(path).suffix.lower()
    return {".jsonl": "jsonl", ".json": "json"}.get(suffix, "tsv")


def order_shards(tables: list[tuple[str, dict, list]], fastas: Sequence[str]) -> list[tuple[str, dict, list]]:
    """The tables by shard index. Shard I of N starts with input record I, so each table's
    first id says which shard it is; empty shards (fewer records than shards) take the
    places left. A table whose command shows another --shard is an error."""
    count = len(tables)
    first_ids = {}
    for record in read_records(list(fastas)):
        if record.index >= count:
            break
        first_ids[record.id] = record.index
    ordered: list[tuple[str, dict, list] | None] = [None] * count
    empty = []
    for table in tables:
        name, _provenance, rows = table
        if not rows:
            empty.append(table)
            continue
        index = first_ids.get(str(rows[0].get("id")))
        if index is None:
            raise MergeError(
                f"{name} starts with {rows[0].get('id')!r}, not one of the first {count} input "
                f"records: it is not one of {count} shards of this input"
            )
        if ordered[index] is not None:
            raise MergeError(f"{name} and {ordered[index][0]} are both shard {index}")
        ordered[index] = table
    for index, table in enumerate(ordered):
        if table is None:
            ordered[index] = empty.pop()
    for index, (name, provenance, _rows) in enumerate(ordered):
        shown = shard_of(provenance)
        if shown is not None and shown != (index, count):
            raise MergeError(
                f"{name} was made with --shard {shown[0]}/{shown[1]} but is shard {index} of the "
                f"{count} given: give all {shown[1]} shards of the run"
            )
    return ordered  # type: ignore[return-value]


def merge_shards(shards: Sequence[str], fastas: Sequence[str], output: str) -> int:
    """Write the merged table to `output`; returns the number of rows."""
    if not shards:
        raise MergeError("no shard tables given")
    ordered = order_shards([(name, *read_table(name)) for name in shards], fastas)
    count = len(ordered)

    reference_name, reference, _rows = ordered[0]
    for name, provenance, _rows in ordered[1:]:
        for key in sorted(set(reference) | set(provenance)):
            if key != "command" and reference.get(key) != provenance.get(key):
                raise MergeError(
                    f"{name} differs from {reference_name} in {key!r}: made with other settings"
                )
    merged = {key: value for key, value in reference.items() if key != "command"}
    merged["shards"] = str(count)
    if "command" in reference:
        merged["command"] = _SHARD.sub(f"--shard I/{count}", reference["command"], count=1)

    columns = next((tuple(rows[0]) for _n, _p, rows in ordered if rows), ANNOTATION_COLUMNS)
    positions = [0] * count
    written = 0
    try:
        with open_writer(output, output_format(output), columns, merged, force=True) as writer:
            for record in read_records(list(fastas)):
                shard = record.index % count
                name, _provenance, rows = ordered[shard]
                if positions[shard] >= len(rows):
                    raise MergeError(f"{name} has no row for {record.id!r} (input record {record.index + 1})")
                row = rows[positions[shard]]
                if str(row.get("id")) != record.id:
                    raise MergeError(
                        f"{name} row {positions[shard] + 1} is {row.get('id')!r}, "
                        f"expected {record.id!r} (input record {record.index + 1})"
                    )
                writer.write(row)
                positions[shard] += 1
                written += 1
            for (name, _provenance, rows), used in zip(ordered, positions):
                if used != len(rows):
                    raise MergeError(f"{name} has {len(rows) - used} rows beyond the input, from {rows[used].get('id')!r}")
    except BaseException:
        partial_path(output).unlink(missing_ok=True)
        raise
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Merge `seqchat annotate --shard I/N` tables into one, in input order."
    )
    parser.add_argument("shards", nargs="+", help="tables written by seqchat annotate --shard I/N")
    parser.add_argument("--fasta", action="append", required=True, help="the input FASTA (repeat for several, in order)")
    parser.add_argument("-o", "--output", required=True, help="merged table (.tsv, .jsonl or .json)")
    options = parser.parse_args(argv)
    try:
        rows = merge_shards(options.shards, options.fasta, options.output)
    except SeqchatError as error:
        print(f"merge_shards: error: {error}", file=sys.stderr)
        return 1
    print(f"merge_shards: {rows} rows from {len(options.shards)} shards -> {options.output}", file=sys.stderr)
    return 0


def _files(value: str | Sequence[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _snakemake_main(smk: object) -> int:
    """Inputs `shards` and `fasta`, one output, an optional log."""
    arguments = [*_files(smk.input.shards), "--output", smk.output[0]]  # type: ignore[attr-defined]
    for fasta in _files(smk.input.fasta):  # type: ignore[attr-defined]
        arguments += ["--fasta", fasta]
    if not smk.log:  # type: ignore[attr-defined]
        return main(arguments)
    with open(smk.log[0], "w") as log:  # type: ignore[attr-defined]
        sys.stderr = log
        try:
            return main(arguments)
        finally:
            sys.stderr = sys.__stderr__


if "snakemake" in globals():  # run by Snakemake's `script:` directive
    sys.exit(_snakemake_main(globals()["snakemake"]))
elif __name__ == "__main__":
    sys.exit(main())
