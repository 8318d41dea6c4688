"""`seqchat reference`: build and inspect the annotated reference sets that `search`,
`annotate` and the alignment baseline search."""

from __future__ import annotations

import click

from seqchat.cli.options import THREADS, threads_default
from seqchat.system import available_cpus


@click.group()
def reference() -> None:
    """Annotated reference sequences: build an index, print what one holds."""


@reference.command("build")
@click.option("-s", "--sequences", multiple=True, required=True, type=click.Path(allow_dash=True),
              help="Reference sequences: FASTA (plain or gzip, - for stdin) or JSONL with id and sequence (repeatable).")
@click.option("-a", "--annotations", multiple=True, type=click.Path(dir_okay=False),
              help="TSV (id, description, optional product, family, go) or JSONL keyed by id (repeatable); optional when the sequence JSONL carries them.")
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False), help="Directory of the reference set to write.")
@click.option("--name", default=None, help="Name of the set in hits and provenance.  [default: the directory's name]")
@click.option("-t", "--threads", type=THREADS, default=None, help=f"Threads.  {threads_default()}")
@click.option("--force", is_flag=True, help="Replace an existing reference set (once the new one is built).")
def reference_build(sequences: tuple[str, ...], annotations: tuple[str, ...], output: str,
                    name: str | None, threads: int | None, force: bool) -> None:
    """Index annotated sequences for alignment search (k-mer prefilter + HMMER)."""
    from seqchat.homology.build import build_reference

    info = build_reference(
        list(sequences), list(annotations), output,
        source_label=name, threads=threads or available_cpus(), force=force,
    )
    click.echo(f"wrote {info.path}: {info.references} references ({info.coding} coding), "
               f"content sha256 {info.content_sha256[:16]}", err=True)


@reference.command("info")
@click.argument("directory", type=click.Path(file_okay=False))
def reference_info(directory: str) -> None:
    """Print a reference set's counts, content hash and sources."""
    from seqchat.homology.reference import load_reference

    for line in load_reference(directory).info().lines():
        click.echo(line)
