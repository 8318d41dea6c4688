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
from seqchat.home import keep_matplotlib_cache_home, seqchat_home

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
    keep_matplotlib_cache_home()


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
    cache_dir: str | None,
    allow_external_paths: bool,
    trust_remote_code: bool,
    quiet: bool,
) -> None:
    """Write one functional description per sequence of INPUTS (FASTA, plain or gzip, - for stdin)."""
    import contextlib
    import itertools
    import os
    import time

    from seqchat.annotate import Annotator, with_decoding
    from seqchat.cache import ResultCache
    from seqchat.sequences import read_records
    from seqchat.writers import ANNOTATION_COLUMNS, check_output_path, open_writer

    shard_spec = parse_shard(shard)
    if resume and output == "-":
        raise click.UsageError("--resume needs an output file (-o FILE)")
    check_output_path(output, force=force, resume=resume)
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
        cache = ResultCache(cache_dir, annotator.cache_context()) if cache_dir else None
        with open_writer(
            output, fmt, ANNOTATION_COLUMNS, provenance,
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


@cli.group(invoke_without_command=True)
@click.pass_context
def models(ctx: click.Context) -> None:
    """List the bundles seqchat can find ($SEQCHAT_HOME/bundles and shipped ones)."""
    if ctx.invoked_subcommand is not None:
        return
    from seqchat.bundle import list_bundles

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


@models.command("compile")
@click.argument("name")
@click.option("--allow-external-paths", is_flag=True)
@click.option("--trust-remote-code", is_flag=True, help="Allow the encoder's own Python code from its repository.")
def models_compile(name: str, allow_external_paths: bool, trust_remote_code: bool) -> None:
    """Compile a bundle's encoder and projector to ONNX, in the bundle: annotate then starts
    without PyTorch on a CPU."""
    from seqchat.bundle import load_bundle
    from seqchat.export import compile_bundle

    bundle = load_bundle(
        name, allow_external_paths=allow_external_paths, trust_remote_code=trust_remote_code
    )
    for path in compile_bundle(bundle):
        click.echo(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")


def _load_run_config(ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """`--config run.yaml` supplies defaults for every option; flags given override it."""
    if value is None:
        return None
    import yaml

    try:
        settings = yaml.safe_load(Path(value).read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise click.BadParameter(f"{value}: {error}", param_hint="--config")
    if not isinstance(settings, dict):
        raise click.BadParameter(f"{value}: expected a mapping of option names", param_hint="--config")
    ctx.default_map = {**(ctx.default_map or {}), **{k.replace("-", "_"): v for k, v in settings.items()}}
    return value


_TRAINING_OPTIONS = [
    click.option("--config", type=click.Path(dir_okay=False), callback=_load_run_config, is_eager=True, expose_value=False, help="YAML file of option values (flags override)."),
    click.option("--data", multiple=True, required=True, help="Training data (repeatable)."),
    click.option("-m", "--model", required=True, help="Base bundle (name or path)."),
    click.option("--out", required=True, type=click.Path(file_okay=False), help="Directory of the new bundle."),
    click.option("--epochs", type=click.IntRange(1), default=1, show_default=True),
    click.option("--max-steps", type=click.IntRange(1), default=None),
    click.option("--lr", type=float, default=1e-3, show_default=True),
    click.option("--encoder-lr", type=float, default=None, help="Learning rate of the encoder [--lr]."),
    click.option("--batch-size", type=click.IntRange(1), default=8, show_default=True, help="Per process."),
    click.option("--val-fraction", type=click.FloatRange(0, 0.9), default=0.05, show_default=True),
    click.option("--val-data", multiple=True, help="Validation data instead of a random split."),
    click.option("--val-every", type=click.IntRange(1), default=50, show_default=True),
    click.option("--val-max-examples", type=click.IntRange(1), default=256, show_default=True, help="Validation examples scored each time."),
    click.option("--checkpoint-every", type=click.IntRange(1), default=100, show_default=True),
    click.option("--warmup-steps", type=click.IntRange(0), default=20, show_default=True),
    click.option("--max-target-tokens", type=click.IntRange(2), default=96, show_default=True),
    click.option("--projector-type", type=click.Choice(["linear", "mlp"]), default=None),
    click.option("--max-soft-tokens", type=click.IntRange(1), default=None),
    click.option("--pool-stride", type=click.IntRange(1), default=None),
    click.option("--train-encoder", is_flag=True, help="Train the encoder too."),
    click.option("--init-encoder", type=click.Path(dir_okay=False, exists=True), default=None, help="Start from a fresh encoder built from this multimolecule config."),
    click.option("--resume", is_flag=True, help="Continue from the last checkpoint in --out."),
    click.option("--seed", type=int, default=0, show_default=True),
    click.option("--threads", "-t", type=click.IntRange(1), default=None),
    click.option("--device", default="auto", show_default=True),
]


def training_options(function: Any) -> Any:
    for option in reversed(_TRAINING_OPTIONS):
        function = option(function)
    return function


def _run_training(stage: str, options: dict[str, Any]) -> None:
    from seqchat.training import TrainSettings, train

    for name in ("data", "val_data"):
        options[name] = list(options[name])
    out = train(TrainSettings(stage=stage, **options), log=lambda line: click.echo(line, err=True))
    click.echo(f"wrote bundle {out}", err=True)
    click.echo(f"(to start without PyTorch on a CPU: seqchat models compile {out})", err=True)


@cli.group()
def finetune() -> None:
    """Train a bundle: stage 1 (align) and stage 2 (instruct)."""


@finetune.command("align")
@training_options
def finetune_align(**options: Any) -> None:
    """Stage 1: the sequence alone -> its description; trains the projector (and encoder)."""
    _run_training("align", options)


@finetune.command("instruct")
@training_options
@click.option("--lora-rank", type=click.IntRange(0), default=0, show_default=True, help="LoRA rank on the LLM's attention (0: none).")
@click.option("--lora-alpha", type=float, default=None, help="LoRA alpha [2 x rank].")
@click.option("--question", default=None, help="The bundle's default question when annotating.")
def finetune_instruct(**options: Any) -> None:
    """Stage 2: sequence + question -> answer; starts from a stage-1 bundle."""
    _run_training("instruct", options)


@finetune.command("make-qa")
@click.option("--data", "inputs", multiple=True, required=True, type=click.Path(exists=True, dir_okay=False), help="Annotation JSONL (yeast_sgd or rfam_nrc style).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="QA pairs JSONL to write.")
def finetune_make_qa(inputs: tuple[str, ...], out: str) -> None:
    """Turn structured annotations into stage-2 question/answer pairs (templates in docs)."""
    from seqchat.qa import write_qa_jsonl

    count = write_qa_jsonl(list(inputs), out)
    click.echo(f"wrote {count} QA pairs to {out}", err=True)


@cli.command("eval")
@click.option("--references", "-r", required=True, type=click.Path(exists=True, dir_okay=False), help="JSONL (id + text) or seqchat TSV.")
@click.option("--predictions", "-p", required=True, multiple=True, type=click.Path(exists=True, dir_okay=False), help="seqchat TSV/JSONL outputs (repeatable, or several after one -p).")
@click.argument("more_predictions", nargs=-1, type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None, help="Write the report as JSON.")
@click.option("--plot", type=click.Path(dir_okay=False), default=None, help="Grouped bar chart (PNG).")
@click.option("--no-embedding", is_flag=True, help="Skip the embedding-similarity metrics.")
def eval_command(
    references: str,
    predictions: tuple[str, ...],
    more_predictions: tuple[str, ...],
    output: str | None,
    plot: str | None,
    no_embedding: bool,
) -> None:
    """Score predictions against references: BLEU-1..4, METEOR, ROUGE-1/2/L, embedding similarity."""
    import json

    from rich.console import Console

    from seqchat.metrics import evaluate, format_table, load_texts, plot_reports

    reference_texts = load_texts(references)
    if not reference_texts:
        raise SeqchatError(f"{references}: no references (need rows with an id and a text)")
    reports = {}
    for path in (*predictions, *more_predictions):
        reports[Path(path).stem] = evaluate(reference_texts, load_texts(path), embedding=not no_embedding)
    console = Console()
    console.print(format_table(reports))
    for name, report in reports.items():
        for note in report.notes:
            click.echo(f"{name}: {note}", err=True)
    if output:
        Path(output).write_text(json.dumps({n: r.to_dict() for n, r in reports.items()}, indent=2) + "\n")
    if plot:
        plot_reports(reports, plot)


def _reference_rows(path: str) -> list[tuple[str, str, str]]:
    """(id, sequence, description) from a JSONL of annotated sequences."""
    import json

    from seqchat.errors import SeqchatError

    rows = []
    with open(path) as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                rows.append((str(row["id"]), str(row["sequence"]), str(row.get("text") or row["description"])))
            except (json.JSONDecodeError, KeyError, TypeError) as error:
                raise SeqchatError(f"{path}:{number}: need JSON with id, sequence and text ({error})")
    if not rows:
        raise SeqchatError(f"{path}: no reference sequences")
    return rows


@cli.group()
def baseline() -> None:
    """What a user would get without seqchat's model, to compare against."""


@baseline.command("nearest")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(allow_dash=True))
@click.option("--reference", required=True, type=click.Path(exists=True, dir_okay=False), help="JSONL of annotated sequences (id, sequence, text).")
@click.option("-k", type=click.IntRange(1, 13), default=None, help="k-mer size [8].")
@click.option("-o", "--output", default="-", show_default=True)
@click.option("-f", "--format", "fmt", type=click.Choice(FORMATS), default="tsv", show_default=True)
@click.option("--force", is_flag=True)
def baseline_nearest(inputs: tuple[str, ...], reference: str, k: int | None, output: str, fmt: str, force: bool) -> None:
    """Copy the description of the most similar reference sequence (k-mer profile cosine)."""
    from seqchat.baselines import DEFAULT_K, KmerNearestNeighbour
    from seqchat.sequences import read_records
    from seqchat.writers import open_writer

    model = KmerNearestNeighbour(k=k or DEFAULT_K).fit(_reference_rows(reference))
    columns = ("id", "length", "description", "neighbour", "similarity")
    provenance = {"seqchat": __version__, "baseline": f"k-mer nearest neighbour (k={k or DEFAULT_K})", "reference": reference}
    with open_writer(output, fmt, columns, provenance, force=force) as writer:
        for record in read_records(inputs):
            prediction = model.predict([record.sequence])[0]
            writer.write({"id": record.id, "length": record.length, "description": prediction.description,
                          "neighbour": prediction.ref_id or "", "similarity": round(prediction.similarity, 4)})


@baseline.command("most-common")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(allow_dash=True))
@click.option("--reference", required=True, type=click.Path(exists=True, dir_okay=False), help="JSONL of annotated sequences (id, sequence, text).")
@click.option("-o", "--output", default="-", show_default=True)
@click.option("-f", "--format", "fmt", type=click.Choice(FORMATS), default="tsv", show_default=True)
@click.option("--force", is_flag=True)
def baseline_most_common(inputs: tuple[str, ...], reference: str, output: str, fmt: str, force: bool) -> None:
    """Predict the single most common reference description for every sequence."""
    from seqchat.baselines import most_common_description
    from seqchat.sequences import read_records
    from seqchat.writers import open_writer

    description = most_common_description(text for _id, _seq, text in _reference_rows(reference))
    provenance = {"seqchat": __version__, "baseline": "most common description", "reference": reference}
    with open_writer(output, fmt, ("id", "length", "description"), provenance, force=force) as writer:
        for record in read_records(inputs):
            writer.write({"id": record.id, "length": record.length, "description": description})


@baseline.command("llm-only")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(allow_dash=True))
@click.option("-m", "--model", default="default", show_default=True, help="Bundle whose LLM answers.")
@click.option("--question", default=None, help="Question asked after the sequence text.")
@click.option("--max-nucleotides", type=click.IntRange(1), default=1000, show_default=True, help="Longest sequence text shown.")
@click.option("--max-new-tokens", type=click.IntRange(1), default=None)
@click.option("-t", "--threads", type=click.IntRange(1), default=None)
@click.option("--parallel", type=click.IntRange(1, 256), default=8, show_default=True)
@click.option("-o", "--output", default="-", show_default=True)
@click.option("-f", "--format", "fmt", type=click.Choice(FORMATS), default="tsv", show_default=True)
@click.option("--force", is_flag=True)
def baseline_llm_only(inputs: tuple[str, ...], model: str, question: str | None, max_nucleotides: int,
                      max_new_tokens: int | None, threads: int | None, parallel: int, output: str, fmt: str, force: bool) -> None:
    """The sequence given as text to the bundle's LLM (no encoder, no projector)."""
    import os

    from seqchat.annotate import with_decoding
    from seqchat.bundle import load_bundle
    from seqchat.llm_only import DEFAULT_TEXT_QUESTION, annotate_as_text
    from seqchat.runtime import GgufRuntime
    from seqchat.sequences import read_records
    from seqchat.writers import ANNOTATION_COLUMNS, open_writer

    bundle = load_bundle(model, require_weights=False)
    decoding = with_decoding(bundle.decoding, max_new_tokens=max_new_tokens)
    asked = question or DEFAULT_TEXT_QUESTION
    provenance = {"seqchat": __version__, "baseline": "LLM only (sequence as text)", "llm": str(bundle.llm_path),
                  "question": asked, "max_nucleotides": str(max_nucleotides)}
    with GgufRuntime(bundle.llm_path, n_parallel=parallel, n_ctx_per_slot=max_nucleotides + 512,
                     n_threads=threads or os.cpu_count()) as runtime, \
            open_writer(output, fmt, ANNOTATION_COLUMNS, provenance, force=force) as writer:
        for annotation in annotate_as_text(runtime, read_records(inputs), question=asked,
                                           decoding=decoding, max_nucleotides=max_nucleotides):
            writer.write(annotation.as_row())


@cli.command()
@click.argument("inputs", nargs=-1, type=click.Path(exists=True, dir_okay=False))
@click.option("-m", "--model", default="default", show_default=True, help="Bundle name or path.")
@click.option("--max-new-tokens", type=click.IntRange(1), default=None, help="Longest answer, in tokens [bundle].")
@click.option("--temperature", type=click.FloatRange(0), default=None, help="0 is greedy [bundle].")
@click.option("--top-p", type=click.FloatRange(0, 1), default=None, help="Nucleus sampling [bundle].")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for sampling.")
@click.option("--context", type=click.IntRange(64), default=2048, show_default=True, help="Tokens one conversation may hold.")
@click.option("--threads", "-t", type=click.IntRange(1), default=None, help="CPU threads [all cores].")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda[:N].")
@click.option("--history", type=click.Path(dir_okay=False), default=None, help="Line history file [$SEQCHAT_HOME/repl_history].")
@click.option("--no-history", is_flag=True, help="Keep no line history file.")
@click.option("--allow-external-paths", is_flag=True, help="Let the bundle name files outside itself.")
@click.option("--trust-remote-code", is_flag=True, help="Allow the encoder's own Python code from its repository.")
@click.pass_context
def repl(
    ctx: click.Context,
    inputs: tuple[str, ...],
    model: str,
    max_new_tokens: int | None,
    temperature: float | None,
    top_p: float | None,
    seed: int,
    context: int,
    threads: int | None,
    device: str,
    history: str | None,
    no_history: bool,
    allow_external_paths: bool,
    trust_remote_code: bool,
) -> None:
    """Chat about sequences: paste a sequence or FASTA record (or load INPUTS), then ask.

    Commands inside: :help, :seqs, :use ID, :load FILE, :reset, :save FILE, :quit.
    Reads plain lines when standard input is not a terminal, so it can be scripted."""
    import os

    from seqchat.repl import default_history_path, run_repl

    history_path = None if no_history else Path(history) if history else default_history_path()
    code = run_repl(
        model,
        inputs,
        threads=threads or os.cpu_count() or 1,
        device=device,
        context=context,
        decoding_overrides={"max_new_tokens": max_new_tokens, "temperature": temperature, "top_p": top_p, "seed": seed},
        history=history_path,
        allow_external_paths=allow_external_paths,
        trust_remote_code=trust_remote_code,
    )
    if code:
        ctx.exit(code)


def main() -> None:
    cli(prog_name="seqchat")


if __name__ == "__main__":  # python -m seqchat.cli (torchrun -m seqchat.cli)
    main()
