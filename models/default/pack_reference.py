"""Pack the default bundle's reference set: every annotated sequence of ../shared/data
(yeast chromosomes I-XIII, the nRC training split) as one xz-compressed JSONL, sorted by id,
byte-for-byte reproducible. seqchat indexes it at first use (seqchat.homology.packed).

    python models/default/pack_reference.py ../shared/data models/default/reference.jsonl.xz
"""

from __future__ import annotations

import json
import lzma
import sys
from pathlib import Path

HELD_OUT = {"chr14", "chr15", "chr16"}
GO_FIELDS = ("go_function", "go_process", "go_component")


def annotated(row: dict) -> dict:
    go = [term for field in GO_FIELDS for term in (row.get(field) or "").split("; ") if term]
    return {
        "id": row["id"],
        "sequence": row["sequence"],
        "description": row["text"],
        "product": row.get("product") or "",
        "family": row.get("rfam_acc") or "",
        "go": go,
    }


def main(data_dir: Path, out: Path) -> None:
    rows = []
    for name in ("yeast_sgd", "rfam_nrc"):
        for line in (data_dir / name / "train.jsonl").read_text().splitlines():
            row = json.loads(line)
            if row.get("chrom") in HELD_OUT:
                raise SystemExit("held-out chromosomes XIV-XVI found in the data: refusing")
            rows.append(annotated(row))
    rows.sort(key=lambda row: row["id"])
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode()
    out.write_bytes(lzma.compress(text, preset=9 | lzma.PRESET_EXTREME))
    print(f"{out}: {len(rows)} references, {out.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
