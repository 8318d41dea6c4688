"""The base of the grounded bundle: the stage-1 `default` bundle with a prompt that shows each
sequence's closest reference hits ({evidence}) beside its soft tokens.

    python models/default/grounded_base.py models/default runs/default/grounded-base
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import yaml

USER = "{sequence}\nClosest annotated sequences:\n{evidence}\n{question}"


def main(source: Path, out: Path) -> None:
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(source, out, ignore=shutil.ignore_patterns("compiled", "*.png", "*.py", "*.sh",
                                                                 "*.md", "base", "*.yaml"))
    config = yaml.safe_load((source / "seqchat.yaml").read_text())
    config.pop("compiled", None)
    config["name"] = out.name
    config["prompt"].update(user=USER, question="Describe this sequence.", evidence_tokens=96)
    (out / "seqchat.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    print(f"wrote {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
