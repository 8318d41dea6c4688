"""Where seqchat keeps user state: `$SEQCHAT_HOME` (user bundles, REPL history, caches).

A pipeline job should write nowhere but its output and this directory."""

from __future__ import annotations

import os
from pathlib import Path


def seqchat_home() -> Path:
    """`$SEQCHAT_HOME`, else the platform's user data directory."""
    configured = os.environ.get("SEQCHAT_HOME")
    if configured:
        return Path(configured)
    from platformdirs import user_data_path

    return user_data_path("seqchat")


def keep_matplotlib_cache_home() -> None:
    """matplotlib, imported by multimolecule and by the eval plots, writes a font cache
    under ~/.cache and ~/.config on first use. Unless the user chose a place
    (`MPLCONFIGDIR`), it goes under `$SEQCHAT_HOME/cache/matplotlib`."""
    os.environ.setdefault("MPLCONFIGDIR", str(seqchat_home() / "cache" / "matplotlib"))
