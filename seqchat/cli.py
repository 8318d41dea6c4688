"""The `seqchat` command line: a thin layer over the library.

Heavy modules (torch, transformers, llama.cpp) are imported inside the commands, so
`seqchat --version` and `seqchat --help` answer at once.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import click

from seqchat import __version__
from seqchat.errors import SeqchatError

FORMATS = ("tsv", "jsonl", "json")


class SeqchatGroup(click.Group):
    """Turns expected errors into one line on stderr and a non-zero exit (traceback with
    --debug)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except KeyboardInterrupt:
            click.echo("seqchat: interrupted", err=True)
            ctx.exit(130)
        except BrokenPipeError:
            sys.stderr.close()
            ctx.exit(141)
        except Exception as error:  # noqa: BLE001 (the one place errors become messages)
            if (ctx.obj or {}).get("debug"):
                raise
            if isinstance(error, SeqchatError):
                message = str(error)
            else:
                message = f"{type(error).__name__}: {error} (run with --debug for details)"
            click.echo(f"seqchat: error: {message.splitlines()[0] if message else ''}", err=True)
            ctx.exit(1)


@click.group(cls=SeqchatGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", message="seqchat %(version)s")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Read DNA and RNA sequences and write what they do, in plain English."""
    ctx.obj = {"debug": debug}


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
    """Records in plain or gzip files, for the progress bar; None when reading stdin."""
    import gzip

    total = 0
    for path in paths:
        if path == "-":
            return None
        with open(path, "rb") as raw:
            gzipped = raw.read(2) == b"\x1f\x8b"
        opener = gzip.open if gzipped else open
        with opener(path, "rb") as handle:
            previous = b"\n"
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


@cli.command()
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
    allow_external_paths: bool,
    trust_remote_code: bool,
    quiet: bool,
) -> None:
    """Write one functional description per sequence of INPUTS (FASTA, plain or gzip, - for stdin)."""
    import itertools
    import os
    import time

    from seqchat.annotate import Annotator, with_decoding
    from seqchat.sequences import read_records
    from seqchat.writers import ANNOTATION_COLUMNS, open_writer

    shard_spec = parse_shard(shard)
    if resume and output == "-":
        raise click.UsageError("--resume needs an output file (-o FILE)")
    threads = threads or os.cpu_count() or 1
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
        total = None if quiet else count_fasta_records(inputs)
        show = not quiet and sys.stderr.isatty()
        with open_writer(
            output, fmt, ANNOTATION_COLUMNS, provenance,
            force=force, resume=resume, resume_keys=resume_keys,
        ) as writer, progress_bar(show, total) as progress:
            task = progress.add_task("annotate", total=total, rate="")
            if total is not None:
                progress.update(task, completed=len(writer.completed_ids))
            started, done = time.monotonic(), 0
            todo = _pending(records, shard_spec, writer.completed_ids)
            for annotation in annotator.annotate(todo):
                writer.write(annotation.as_row())
                done += 1
                rate = done / max(time.monotonic() - started, 1e-9)
                progress.update(task, advance=1, rate=f"{rate:.2f} seq/s")


@cli.group(invoke_without_command=True)
@click.pass_context
def models(ctx: click.Context) -> None:
    """List the bundles seqchat can find ($SEQCHAT_HOME/bundles and shipped ones)."""
    if ctx.invoked_subcommand is not None:
        return
    from seqchat.bundle import list_bundles, seqchat_home

    found = list_bundles()
    if not found:
        click.echo(f"no bundles found (user bundles go in {seqchat_home() / 'bundles'})")
    for name, directory, where in found:
        click.echo(f"{name}\t{where}\t{directory}")


@models.command("info")
@click.argument("name")
@click.option("--allow-external-paths", is_flag=True)
def models_info(name: str, allow_external_paths: bool) -> None:
    """Print a bundle's config and the sha256 of each of its files."""
    import yaml

    from seqchat.bundle import load_bundle

    bundle = load_bundle(name, allow_external_paths=allow_external_paths)
    click.echo(f"# {bundle.name}: {bundle.root}")
    click.echo(yaml.safe_dump(bundle.config, sort_keys=False).rstrip())
    click.echo("# sha256")
    for file_name, digest in bundle.sha256s().items():
        click.echo(f"{digest}  {file_name}")


def main() -> None:
    cli(prog_name="seqchat")
