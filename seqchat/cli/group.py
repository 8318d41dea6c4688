"""The `seqchat` command group: errors become one line on stderr, never a traceback."""

from __future__ import annotations

import sys
from typing import Any

import click

from seqchat import __version__
from seqchat.errors import SeqchatError
from seqchat.home import keep_matplotlib_cache_home

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
