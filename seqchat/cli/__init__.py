"""The `seqchat` command line: a thin layer over the library, one module per command group.

Heavy modules (torch, transformers, llama.cpp) are imported inside the commands, so
`seqchat --version` and `seqchat --help` answer at once.
"""

from __future__ import annotations

from seqchat.cli.annotate import annotate
from seqchat.cli.evaluate import baseline, eval_command
from seqchat.cli.finetune import finetune
from seqchat.cli.group import cli
from seqchat.cli.models import models
from seqchat.cli.reference import reference
from seqchat.cli.repl import repl
from seqchat.cli.search import search

for _command in (annotate, search, reference, models, finetune, eval_command, baseline, repl):
    cli.add_command(_command)

__all__ = ["cli", "main"]


def main() -> None:
    cli(prog_name="seqchat")
