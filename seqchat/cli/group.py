"""The `seqchat` command group: errors become one line on stderr, never a traceback."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from seqchat import __version__
from seqchat.errors import SeqchatError
from seqchat.home import keep_matplotlib_cache_home
from seqchat.io.writers import interrupted_partials

FORMATS = ("tsv", "jsonl", "json")


class SeqchatGroup(click.Group):
    """Turns expected errors into one line on stderr and a non-zero exit (traceback with
    --debug)."""

    def invoke(self, ctx: click.Context) -> Any:
        earlier = len(interrupted_partials())  # of earlier commands run in this process
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except KeyboardInterrupt:
            kept = interrupted_partials()[earlier:]
            click.echo(f"seqchat: {self._interrupted(ctx, kept)}", err=True)
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

    def _interrupted(self, ctx: click.Context, kept: tuple[Path, ...]) -> str:
        """What to say on Ctrl-C: where the rows written so far are, and how to go on."""
        if not kept:
            return "interrupted"
        command = self.get_command(ctx, ctx.invoked_subcommand or "")
        resumable = command is not None and any(param.name == "resume" for param in command.params)
        rerun = "--resume to continue" if resumable else "--force to start over"
        where = ", ".join(map(str, kept))
        return f"interrupted; the rows written so far are in {where}: rerun with {rerun}"


@click.group(cls=SeqchatGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", message="seqchat %(version)s")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Read DNA and RNA sequences and write what they do, in plain English."""
    ctx.obj = {"debug": debug}
    keep_matplotlib_cache_home()
