"""`seqchat search`: alignment hits of query sequences in reference sets, BLAST-tabular-like."""

from __future__ import annotations

import shlex
import sys

import click

from seqchat import __version__
from seqchat.cli.group import FORMATS
from seqchat.cli.options import FORMAT_HELP, THREADS, output_format, threads_default
from seqchat.system import available_cpus

SEARCH_COLUMNS = (
    "qseqid", "sseqid", "pident", "qcov", "scov", "evalue", "bitscore", "strand", "path",
    "reference", "description",
)
"""BLAST tabular names where BLAST has them (qcov and scov as fractions), then where the hit
comes from and the reference's description."""


@click.command("search")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(allow_dash=True))
@click.option("-r", "--reference", "references", multiple=True, required=True, type=click.Path(file_okay=False),
              help="Reference set directory (seqchat reference build); repeatable.")
@click.option("--max-hits", type=click.IntRange(1), default=5, show_default=True, help="Hits kept per query.")
@click.option("--evalue", type=click.FloatRange(0, min_open=True), default=1e-3, show_default=True,
              help="Largest E-value reported.")
@click.option("-o", "--output", default="-", show_default=True, help="Output file, - for stdout.")
@click.option("-f", "--format", "fmt", type=click.Choice(FORMATS), default=None, help=FORMAT_HELP)
@click.option("--force", is_flag=True, help="Overwrite an existing output.")
@click.option("-t", "--threads", type=THREADS, default=None, help=f"Threads.  {threads_default()}")
def search(inputs: tuple[str, ...], references: tuple[str, ...], max_hits: int, evalue: float,
           output: str, fmt: str | None, force: bool, threads: int | None) -> None:
    """Search INPUTS (FASTA, plain or gzip, - for stdin) in reference sets: one row per hit."""
    fmt = output_format(output, fmt)
    from seqchat.homology.reference import load_reference
    from seqchat.homology.search import search as search_hits
    from seqchat.io.sequences import read_records
    from seqchat.io.writers import check_output_path, open_writer

    check_output_path(output, force=force, resume=False)
    sets = [load_reference(directory) for directory in references]
    provenance = {"seqchat": __version__}
    for ref in sets:
        provenance[f"reference_{ref.name}"] = f"{ref.content_sha256} ({ref.path})"
    provenance["search"] = f"max_hits={max_hits} evalue={evalue:g}"
    provenance["command"] = shlex.join(["seqchat", *sys.argv[1:]])
    found = search_hits(read_records(inputs), sets, max_hits=max_hits, evalue=evalue,
                        threads=threads or available_cpus())
    with open_writer(output, fmt, SEARCH_COLUMNS, provenance, force=force) as writer:
        for query_id, hits in found:
            for hit in hits:
                writer.write({
                    "qseqid": query_id, "sseqid": hit.reference_id, "pident": round(hit.identity, 1),
                    "qcov": round(hit.query_coverage, 3), "scov": round(hit.target_coverage, 3),
                    "evalue": float(f"{hit.evalue:.3g}"), "bitscore": round(hit.bit_score, 1),
                    "strand": hit.strand, "path": hit.path, "reference": hit.reference_set,
                    "description": hit.description,
                })
