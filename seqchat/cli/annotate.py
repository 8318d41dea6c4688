"""`seqchat annotate`: FASTA in, one description per sequence out."""

from __future__ import annotations

import os
import shlex
import stat
import sys
from collections.abc import Iterable, Iterator
from typing import Any

import click

from seqchat.cli.group import FORMATS
from seqchat.io.compressed import (
    DECOMPRESSION_ERRORS,
    MAGIC_LENGTH,
    compression_of,
    decompressed,
)
from seqchat.system import available_cpus


def parse_shard(value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    try:
        index_text, count_text = value.split("/")
        index, count = int(index_text), int(count_text)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not I/N (e.g. 0/4)", param_hint="--shard")
    if count < 1 or not 0 <= index < count:
        raise click.BadParameter(f"{value!r}: need 0 <= I < N", param_hint="--shard")
    return index, count


def count_fasta_records(paths: Iterable[str]) -> int | None:
    """Records in the inputs, for the progress bar; None unless every input is a regular file.

    Stdin, a pipe (``<(...)``) or a FIFO can be read only once: counting its records first
    would take them from the run. What cannot be read is left for the reader to report."""
    paths = list(paths)
    if not all(map(_is_regular_file, paths)):
        return None
    try:
        return sum(map(_count_records, paths))
    except DECOMPRESSION_ERRORS:  # OSError among them
        return None


def _is_regular_file(path: str) -> bool:
    try:
        return path != "-" and stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def _count_records(path: str) -> int:
    """Lines starting with '>' in a plain or compressed FASTA file."""
    total, previous = 0, b"\n"
    with open(path, "rb") as raw:
        compression = compression_of(raw.read(MAGIC_LENGTH))
        raw.seek(0)
        with decompressed(raw, compression) as handle:
            while block := handle.read(1 << 20):
                total += block.count(b"\n>") + (previous == b"\n" and block[:1] == b">")
                previous = block[-1:]
    return total


def progress_bar(enabled: bool, total: int | None) -> Any:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("annotating"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not enabled,
        transient=False,
    )


def _pending(records: Iterable[Any], shard: tuple[int, int] | None, done: frozenset[str]) -> Iterator[Any]:
    for record in records:
        if shard is not None and record.index % shard[1] != shard[0]:
            continue
        if record.id in done:
            continue
        yield record


@click.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(allow_dash=True))
@click.option("-m", "--model", default="default", show_default=True, help="Bundle name or path.")
@click.option("-o", "--output", default="-", show_default=True, help="Output file, - for stdout.")
@click.option("-f", "--format", "fmt", type=click.Choice(FORMATS), default="tsv", show_default=True)
@click.option("--force", is_flag=True, help="Overwrite an existing output.")
@click.option("--resume", is_flag=True, help="Continue a killed run from its completed rows.")
@click.option("--question", default=None, help="Ask this instead of the bundle's default question.")
@click.option("--max-new-tokens", type=click.IntRange(1), default=None, help="Longest answer, in tokens [bundle].")
@click.option("--temperature", type=click.FloatRange(0), default=None, help="0 is greedy [bundle].")
@click.option("--top-p", type=click.FloatRange(0, 1), default=None, help="Nucleus sampling [bundle].")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for sampling.")
@click.option("--threads", "-t", type=click.IntRange(1), default=None, help="CPU threads [all cores].")
@click.option("--parallel", type=click.IntRange(1, 256), default=8, show_default=True, help="Sequences decoded at once.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda[:N].")
@click.option("--shard", default=None, metavar="I/N", help="Only every N-th record, starting at I (0-based).")
@click.option("-r", "--reference", "references", multiple=True, type=click.Path(file_okay=False),
              help="A reference set (seqchat reference build) searched beside the bundle's own; repeatable.")
@click.option("--no-bundle-reference", is_flag=True,
              help="Search only the --reference sets, not the bundle's own (e.g. to evaluate on sequences it holds).")
@click.option("--cache", "cache_dir", default=None, metavar="DIR", help="Reuse answers for sequences seen before; keep new ones.")
@click.option("--allow-external-paths", is_flag=True, help="Let the bundle name files outside itself.")
@click.option("--trust-remote-code", is_flag=True, help="Allow the encoder's own Python code from its repository.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def annotate(
    inputs: tuple[str, ...],
    model: str,
    output: str,
    fmt: str,
    force: bool,
    resume: bool,
    question: str | None,
    max_new_tokens: int | None,
    temperature: float | None,
    top_p: float | None,
    seed: int,
    threads: int | None,
    parallel: int,
    device: str,
    shard: str | None,
    references: tuple[str, ...],
    no_bundle_reference: bool,
    cache_dir: str | None,
    allow_external_paths: bool,
    trust_remote_code: bool,
    quiet: bool,
) -> None:
    """Write one functional description per sequence of INPUTS (FASTA, plain or gzip, - for stdin)."""
    import contextlib
    import itertools
    import time

    from seqchat.annotate import Annotator, with_decoding
    from seqchat.io.cache import ResultCache
    from seqchat.io.sequences import read_records
    from seqchat.io.writers import check_output_path, open_writer

    shard_spec = parse_shard(shard)
    if resume and output == "-":
        raise click.UsageError("--resume needs an output file (-o FILE)")
    check_output_path(output, force=force, resume=resume)
    threads = threads or available_cpus()
    records = read_records(inputs)
    first = next(records, None)  # bad input fails here, before models load or output opens
    records = itertools.chain([first] if first is not None else [], records)
    with Annotator.load(
        model,
        device=device,
        threads=threads,
        parallel=parallel,
        question=question,
        allow_external_paths=allow_external_paths,
        trust_remote_code=trust_remote_code,
        references=references,
        bundle_reference=not no_bundle_reference,
    ) as annotator:
        annotator.decoding = with_decoding(
            annotator.decoding,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_p=top_p,
            seed=seed,
        )
        provenance = annotator.provenance()
        provenance["command"] = shlex.join(["seqchat", *sys.argv[1:]])
        resume_keys = [key for key in provenance if key not in ("command",)]
        show = not quiet and sys.stderr.isatty()
        total = count_fasta_records(inputs) if show else None
        cache = ResultCache(cache_dir, annotator.cache_context()) if cache_dir else None
        with open_writer(
            output, fmt, annotator.columns, provenance,
            force=force, resume=resume, resume_keys=resume_keys,
        ) as writer, progress_bar(show, total) as progress, cache or contextlib.nullcontext():
            task = progress.add_task("annotate", total=total, rate="")
            if total is not None:
                progress.update(task, completed=len(writer.completed_ids))
            started, done = time.monotonic(), 0
            todo = _pending(records, shard_spec, writer.completed_ids)
            for annotation in annotator.annotate(todo, cache):
                writer.write(annotation.as_row())
                done += 1
                rate = done / max(time.monotonic() - started, 1e-9)
                progress.update(task, advance=1, rate=f"{rate:.2f} seq/s")
        if cache is not None and not quiet:
            found = f"{cache.hits} answers found, {cache.misses} generated"
            click.echo(f"seqchat: cache {cache_dir}: {found}", err=True)
