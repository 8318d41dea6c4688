"""`seqchat finetune`: training stages 1 and 2, and QA pairs for stage 2."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from seqchat.cli.options import DEVICE, SEED, THREADS, threads_default


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
    click.option("--epochs", type=click.IntRange(1), default=1, show_default=True, help="Passes over the training data."),
    click.option("--max-steps", type=click.IntRange(1), default=None, help="Stop after this many optimizer steps.  [default: the epochs' steps]"),
    click.option("--lr", type=float, default=1e-3, show_default=True, help="Peak learning rate."),
    click.option("--encoder-lr", type=float, default=None, help="Learning rate of the encoder [--lr]."),
    click.option("--batch-size", type=click.IntRange(1), default=8, show_default=True, help="Per process."),
    click.option("--val-fraction", type=click.FloatRange(0, 0.9), default=0.05, show_default=True, help="Share of --data held out for validation when no --val-data is given."),
    click.option("--val-data", multiple=True, help="Validation data instead of a random split."),
    click.option("--val-every", type=click.IntRange(1), default=50, show_default=True, help="Score the validation examples every this many steps."),
    click.option("--val-max-examples", type=click.IntRange(1), default=256, show_default=True, help="Validation examples scored each time."),
    click.option("--checkpoint-every", type=click.IntRange(1), default=100, show_default=True, help="Write a checkpoint (for --resume) every this many steps."),
    click.option("--warmup-steps", type=click.IntRange(0), default=20, show_default=True, help="Steps of linear learning-rate warm-up."),
    click.option("--max-target-tokens", type=click.IntRange(2), default=96, show_default=True, help="Longest target description, in LLM tokens; longer ones are cut."),
    click.option("--projector-type", type=click.Choice(["linear", "mlp"]), default=None, help="Projector architecture.  [default: the base bundle's]"),
    click.option("--max-soft-tokens", type=click.IntRange(1), default=None, help="Most soft tokens a sequence becomes.  [default: the base bundle's]"),
    click.option("--pool-stride", type=click.IntRange(1), default=None, help="Encoder positions pooled into one soft token.  [default: the base bundle's]"),
    click.option("--train-encoder", is_flag=True, help="Train the encoder too."),
    click.option("--init-encoder", type=click.Path(dir_okay=False, exists=True), default=None, help="Start from a fresh encoder built from this multimolecule config."),
    click.option("--resume", is_flag=True, help="Continue from the last checkpoint in --out."),
    click.option("--reference", type=click.Path(file_okay=False), default=None, help="Reference set of the training data (seqchat reference build): the evidence of a grounded prompt."),
    click.option("--seed", type=SEED, default=0, show_default=True, help="Seed for initialisation and data order."),
    click.option("--threads", "-t", type=THREADS, default=None, help=f"CPU threads.  {threads_default()}"),
    click.option("--device", type=DEVICE, default="auto", show_default=True, help="auto, cpu or cuda[:N]."),
]


def training_options(function: Any) -> Any:
    for option in reversed(_TRAINING_OPTIONS):
        function = option(function)
    return function


def _run_training(stage: str, options: dict[str, Any]) -> None:
    from seqchat.train.trainer import TrainSettings, train

    for name in ("data", "val_data"):
        options[name] = list(options[name])
    out = train(TrainSettings(stage=stage, **options), log=lambda line: click.echo(line, err=True))
    click.echo(f"wrote bundle {out}", err=True)
    click.echo(f"(to start without PyTorch on a CPU: seqchat models compile {out})", err=True)


@click.group()
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
    from seqchat.train.qa_files import write_qa_jsonl

    count = write_qa_jsonl(list(inputs), out)
    click.echo(f"wrote {count} QA pairs to {out}", err=True)
