"""`seqchat eval` and `seqchat baseline`: scores, and what one gets without seqchat."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import click

from seqchat import __version__
from seqchat.cli.group import FORMATS
from seqchat.cli.options import FORMAT_HELP, THREADS, bundle_default, output_format, threads_default
from seqchat.errors import SeqchatError
from seqchat.home import seqchat_home
from seqchat.system import available_cpus

if TYPE_CHECKING:
    from seqchat.homology.evidence import Evidence


@click.command("eval")
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

    from seqchat.evaluate.predictions import load_texts
    from seqchat.evaluate.report import format_table, plot_reports
    from seqchat.evaluate.scores import evaluate

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


@click.group()
def baseline() -> None:
    """What a user would get without seqchat's model, to compare against."""


@baseline.command("nearest")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(allow_dash=True))
@click.option("--reference", required=True, type=click.Path(exists=True, dir_okay=False), help="JSONL of annotated sequences (id, sequence, text).")
@click.option("--method", type=click.Choice(["kmer", "align"]), default="kmer", show_default=True,
              help="kmer: the closest k-mer profile. align: the best alignment hit with E <= --evalue (HMMER), else the closest k-mer profile.")
@click.option("-k", type=click.IntRange(1, 13), default=None, help="k-mer size.  [default: 8]")
@click.option("--evalue", type=click.FloatRange(0, min_open=True), default=1e-3, show_default=True, help="Largest E-value of a hit to copy (align).")
@click.option("-t", "--threads", type=THREADS, default=None, help=f"Threads.  {threads_default()}")
@click.option("-o", "--output", default="-", show_default=True, help="Output file, - for stdout.")
@click.option("-f", "--format", "fmt", type=click.Choice(FORMATS), default=None, help=FORMAT_HELP)
@click.option("--force", is_flag=True, help="Overwrite an existing output.")
def baseline_nearest(inputs: tuple[str, ...], reference: str, method: str, k: int | None, evalue: float,
                     threads: int | None, output: str, fmt: str | None, force: bool) -> None:
    """Copy the description of the most similar reference sequence: by k-mer profile cosine,
    or by alignment (alignment transfer, what BLAST-and-copy does)."""
    fmt = output_format(output, fmt)
    from seqchat.evaluate.baselines import DEFAULT_K, KmerNearestNeighbour
    from seqchat.io.sequences import read_records
    from seqchat.io.writers import check_output_path, open_writer

    check_output_path(output, force=force, resume=False)
    k = k or DEFAULT_K
    kmer = KmerNearestNeighbour(k=k).fit(_reference_rows(reference))
    provenance = {"seqchat": __version__, "baseline": f"k-mer nearest neighbour (k={k})", "reference": reference}
    records = read_records(inputs)
    if method == "kmer":
        columns = ("id", "length", "description", "neighbour", "similarity")
        with open_writer(output, fmt, columns, provenance, force=force) as writer:
            for record in records:
                prediction = kmer.predict([record.sequence])[0]
                writer.write({"id": record.id, "length": record.length, "description": prediction.description,
                              "neighbour": prediction.ref_id or "", "similarity": round(prediction.similarity, 4)})
        return
    with _alignment_evidence(reference, evalue, threads or available_cpus()) as evidence:
        provenance["baseline"] = f"alignment transfer (best hit with E <= {evalue:g}, else k-mer nearest neighbour, k={k})"
        provenance.update(evidence.provenance())
        columns = ("id", "length", "description", "neighbour", "method", "identity", "evalue", "similarity")
        with open_writer(output, fmt, columns, provenance, force=force) as writer:
            for record, hits in evidence.searched(records):
                if hits:
                    best = hits[0]
                    writer.write({"id": record.id, "length": record.length, "description": best.description,
                                  "neighbour": best.reference_id, "method": f"align ({best.path})",
                                  "identity": round(best.identity, 1), "evalue": float(f"{best.evalue:.3g}"),
                                  "similarity": None})
                    continue
                prediction = kmer.predict([record.sequence])[0]
                writer.write({"id": record.id, "length": record.length, "description": prediction.description,
                              "neighbour": prediction.ref_id or "", "method": "kmer", "identity": None,
                              "evalue": None, "similarity": round(prediction.similarity, 4)})


@contextlib.contextmanager
def _alignment_evidence(reference: str, evalue: float, threads: int) -> Iterator[Evidence]:
    """The best alignment hit of each query in `reference` (a JSONL of annotated sequences),
    indexed for the run under $SEQCHAT_HOME/cache and removed after it."""
    from seqchat.homology.build import build_reference
    from seqchat.homology.evidence import Evidence

    scratch = seqchat_home() / "cache"
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="baseline-reference-", dir=scratch) as directory:
        index = Path(directory) / Path(reference).stem
        build_reference([reference], [], index, threads=threads)
        evidence = Evidence.load([index], max_hits=1, evalue=evalue, threads=threads)
        assert evidence is not None
        yield evidence


@baseline.command("most-common")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(allow_dash=True))
@click.option("--reference", required=True, type=click.Path(exists=True, dir_okay=False), help="JSONL of annotated sequences (id, sequence, text).")
@click.option("-o", "--output", default="-", show_default=True, help="Output file, - for stdout.")
@click.option("-f", "--format", "fmt", type=click.Choice(FORMATS), default=None, help=FORMAT_HELP)
@click.option("--force", is_flag=True, help="Overwrite an existing output.")
def baseline_most_common(inputs: tuple[str, ...], reference: str, output: str, fmt: str | None, force: bool) -> None:
    """Predict the single most common reference description for every sequence."""
    fmt = output_format(output, fmt)
    from seqchat.evaluate.baselines import most_common_description
    from seqchat.io.sequences import read_records
    from seqchat.io.writers import open_writer

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
@click.option("--max-new-tokens", type=click.IntRange(1), default=None, help=f"Longest answer, in tokens.  {bundle_default('max_new_tokens')}")
@click.option("-t", "--threads", type=THREADS, default=None, help=f"Threads.  {threads_default()}")
@click.option("--parallel", type=click.IntRange(1, 256), default=8, show_default=True, help="Sequences decoded at once.")
@click.option("-o", "--output", default="-", show_default=True, help="Output file, - for stdout.")
@click.option("-f", "--format", "fmt", type=click.Choice(FORMATS), default=None, help=FORMAT_HELP)
@click.option("--force", is_flag=True, help="Overwrite an existing output.")
def baseline_llm_only(inputs: tuple[str, ...], model: str, question: str | None, max_nucleotides: int,
                      max_new_tokens: int | None, threads: int | None, parallel: int, output: str, fmt: str | None, force: bool) -> None:
    """The sequence given as text to the bundle's LLM (no encoder, no projector)."""
    fmt = output_format(output, fmt)

    from seqchat.annotate import with_decoding
    from seqchat.bundle import load_bundle
    from seqchat.evaluate.llm_only import DEFAULT_TEXT_QUESTION, annotate_as_text
    from seqchat.io.sequences import read_records
    from seqchat.io.writers import ANNOTATION_COLUMNS, open_writer
    from seqchat.llm.runtime import GgufRuntime

    bundle = load_bundle(model, require_weights=False)
    decoding = with_decoding(bundle.decoding, max_new_tokens=max_new_tokens)
    asked = question or DEFAULT_TEXT_QUESTION
    provenance = {"seqchat": __version__, "baseline": "LLM only (sequence as text)", "llm": str(bundle.llm_path),
                  "question": asked, "max_nucleotides": str(max_nucleotides)}
    with GgufRuntime(bundle.llm_path, n_parallel=parallel, n_ctx_per_slot=max_nucleotides + 512,
                     n_threads=threads or available_cpus()) as runtime, \
            open_writer(output, fmt, ANNOTATION_COLUMNS, provenance, force=force) as writer:
        for annotation in annotate_as_text(runtime, read_records(inputs), question=asked,
                                           decoding=decoding, max_nucleotides=max_nucleotides):
            writer.write(annotation.as_row())
