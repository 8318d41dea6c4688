"""`seqchat repl`: an interactive chat about sequences."""

from __future__ import annotations

from pathlib import Path

import click

from seqchat.cli.options import (
    DEVICE,
    SEED,
    TEMPERATURE,
    THREADS,
    TOP_P,
    bundle_default,
    threads_default,
)
from seqchat.system import available_cpus


@click.command()
@click.argument("inputs", nargs=-1, type=click.Path(exists=True, dir_okay=False))
@click.option("-m", "--model", default="default", show_default=True, help="Bundle name or path.")
@click.option("--max-new-tokens", type=click.IntRange(1), default=None, help=f"Longest answer, in tokens.  {bundle_default('max_new_tokens')}")
@click.option("--temperature", type=TEMPERATURE, default=None, help=f"Sampling temperature, 0 is greedy.  {bundle_default('temperature')}")
@click.option("--top-p", type=TOP_P, default=None, help=f"Nucleus sampling, in (0, 1].  {bundle_default('top_p')}")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed for sampling.")
@click.option("--context", type=click.IntRange(64), default=2048, show_default=True, help="Tokens one conversation may hold.")
@click.option("--threads", "-t", type=THREADS, default=None, help=f"CPU threads.  {threads_default()}")
@click.option("--device", type=DEVICE, default="auto", show_default=True, help="auto, cpu or cuda[:N].")
@click.option("--history", type=click.Path(dir_okay=False), default=None, help="Line history file [$SEQCHAT_HOME/repl_history].")
@click.option("--no-history", is_flag=True, help="Keep no line history file.")
@click.option("-r", "--reference", "references", multiple=True, type=click.Path(exists=True, file_okay=False), help="A reference set (seqchat reference build) searched beside the bundle's own; repeatable.")
@click.option("--no-bundle-reference", is_flag=True, help="Search only the --reference sets, not the bundle's own.")
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
    references: tuple[str, ...],
    no_bundle_reference: bool,
    allow_external_paths: bool,
    trust_remote_code: bool,
) -> None:
    """Chat about sequences: paste a sequence or FASTA record (or load INPUTS), then ask.

    Commands inside: :help, :seqs, :use ID, :hits, :load FILE, :reset, :save FILE, :quit.
    Reads plain lines when standard input is not a terminal, so it can be scripted."""

    from seqchat.repl import default_history_path, run_repl

    history_path = None if no_history else Path(history) if history else default_history_path()
    code = run_repl(
        model,
        inputs,
        threads=threads or available_cpus(),
        device=device,
        context=context,
        decoding_overrides={"max_new_tokens": max_new_tokens, "temperature": temperature, "top_p": top_p, "seed": seed},
        history=history_path,
        allow_external_paths=allow_external_paths,
        trust_remote_code=trust_remote_code,
        references=references,
        bundle_reference=not no_bundle_reference,
    )
    if code:
        ctx.exit(code)
