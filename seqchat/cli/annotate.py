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
from seqchat.cli.options import (
    DEVICE,
    FORMAT_HELP,
    SEED,
    TEMPERATURE,
    SHARD,
    THREADS,
    TOP_P,
    bundle_default,
    output_format,
    threads_default,
)
from seqchat.system import available_cpus


def check_file_inputs(paths: Iterable[str]) -> int | None:
    """Read every input that is a file through once, before any model loads, so that a bad
    record is reported now and not after hours of work; a missing input or a directory is
    reported here too. Returns the number of records, for the progress bar, when every
    input is a regular file; None when one is stdin, a pipe (``<(...)``) or a FIFO, which
    can be read only once: the run validates those as they stream."""
    from seqchat.io.sequences import read_records

    paths = list(paths)
    files = [path for path in paths if path != "-" and not _is_stream(path)]
    count = sum(1 for _record in read_records(files)) if files else 0
    return count if len(files) == len(paths) else None


def _is_stream(path: str) -> bool:
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISSOCK(mode)


def shows_progress(quiet: bool, output: str, *, stderr_tty: bool, stdout_tty: bool) -> bool:
    """Whether to draw the progress bar: on a terminal, and never on the terminal that the rows
    are written to, where the bar and the rows would overwrite each other."""
    return not quiet and stderr_tty and not (output == "-" and stdout_tty)


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
@click.option("-f", "--format", "fmt", type=click.Choice(FORMATS), default=None, help=FORMAT_HELP)
@click.option("--force", is_flag=True, help="Overwrite an existing output.")
@click.option("--resume", is_flag=True, help="Continue a killed run from its completed rows.")
@click.option("--question", default=None, help="Ask this instead of the bundle's default question.")
@click.option("--max-new-tokens", type=click.IntRange(1), default=None, help=f"Longest answer, in tokens.  {bundle_default('max_new_tokens')}")
@click.option("--temperature", type=TEMPERATURE, default=None, help=f"Sampling temperature, 0 is greedy.  {bundle_default('temperature')}")
@click.option("--top-p", type=TOP_P, default=None, help=f"Nucleus sampling, in (0, 1].  {bundle_default('top_p')}")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed for sampling.")
@click.option("--threads", "-t", type=THREADS, default=None, help=f"CPU threads.  {threads_default()}")
@click.option("--parallel", type=click.IntRange(1, 256), default=8, show_default=True, help="Sequences decoded at once.")
@click.option("--device", type=DEVICE, default="auto", show_default=True, help="auto, cpu or cuda[:N].")
@click.option("--shard", type=SHARD, default=None, help="Only every N-th record, starting at I (0-based).")
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
    fmt: str | None,
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
    shard: tuple[int, int] | None,
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
    from seqchat.bundle import load_bundle
    from seqchat.io.cache import ResultCache
    from seqchat.io.sequences import read_records
    from seqchat.io.writers import check_output_path, open_writer
    from seqchat.llm.prompt import check_question

    fmt = output_format(output, fmt)
    if resume and output == "-":
        raise click.UsageError("--resume needs an output file (-o FILE)")
    if resume and force:
        raise click.UsageError("--resume continues an output and --force replaces it: give one")
    check_output_path(output, force=force, resume=resume)
    threads = threads or available_cpus()
    total = check_file_inputs(inputs)
    bundle = load_bundle(
        model, allow_external_paths=allow_external_paths, trust_remote_code=trust_remote_code
    )
    check_question(bundle.prompt, question)
    records = read_records(inputs)
    first = next(records, None)  # bad input fails here, before models load or output opens
    records = itertools.chain([first] if first is not None else [], records)
    with Annotator.load(
        bundle,
        device=device,
        threads=threads,
        parallel=parallel,
        question=question,
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
        annotator.check_fits()
        provenance = annotator.provenance()
        provenance["command"] = shlex.join(["seqchat", *sys.argv[1:]])
        resume_keys = [key for key in provenance if key not in ("command",)]
        show = shows_progress(quiet, output, stderr_tty=sys.stderr.isatty(), stdout_tty=sys.stdout.isatty())
        cache = ResultCache(cache_dir, annotator.cache_context()) if cache_dir else None
        with open_writer(
            output, fmt, annotator.columns, provenance,
            force=force, resume=resume, resume_keys=resume_keys,
        ) as writer, progress_bar(show, total) as progress, cache or contextlib.nullcontext():
            task = progress.add_task("annotate", total=total, rate="")
            if total is not None:
                progress.update(task, completed=len(writer.completed_ids))
            started, done = time.monotonic(), 0
            todo = _pending(records, shard, writer.completed_ids)
            for annotation in annotator.annotate(todo, cache):
                writer.write(annotation.as_row())
                done += 1
                rate = done / max(time.monotonic() - started, 1e-9)
                progress.update(task, advance=1, rate=f"{rate:.2f} seq/s")
        if cache is not None and not quiet:
            found = f"{cache.hits} answers found, {cache.misses} generated"
            click.echo(f"seqchat: cache {cache_dir}: {found}", err=True)
