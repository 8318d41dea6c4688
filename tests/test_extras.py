"""The core install needs none of the extras: the commands of a slim install run with
PyTorch, transformers, the metrics libraries and the rest made unimportable, and a command
that needs an extra names it in one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import EXTRA_PACKAGES, assert_clean_failure, invoke, subprocess_env

from seqchat.cli.group import EXTRA_OF_PACKAGE
from seqchat.io.sequences import read_records

ROOT = Path(__file__).resolve().parents[1]
BLOCK_EXTRAS = (
    "import sys\n"
    f"for name in {sorted(EXTRA_PACKAGES)!r}:\n"
    "    sys.modules[name] = None  # import fails as if it were not installed\n"
    "from seqchat.cli import main\n"
    "sys.argv = ['seqchat', *sys.argv[1:]]\n"
    "main()\n"
)


def slim_seqchat(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCK_EXTRAS, *args], cwd=cwd, capture_output=True, text=True,
        env=subprocess_env(), timeout=600,
    )


def test_the_extras_in_pyproject_are_the_ones_the_cli_names() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    core = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]

    def package(requirement: str) -> str:
        name = requirement.split(">")[0].split("<")[0].split("=")[0].split("[")[0].strip()
        return name.lower().replace("-", "_")

    for module, extra in EXTRA_OF_PACKAGE.items():
        assert module in {package(r) for r in extras[extra]}, (module, extra)
        assert module not in {package(r) for r in core}, module
    assert not any(package(r) in {"torch", "transformers", "accelerate"} for r in core)


def test_annotate_reference_search_and_models_run_without_the_extras(tmp_path: Path) -> None:
    out = tmp_path / "genes.tsv"
    result = slim_seqchat("annotate", str(ROOT / "examples" / "genes.fasta"), "-o", str(out),
                          "-q", "-t", "1", "--max-new-tokens", "4", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = [line for line in out.read_text().splitlines() if line and not line.startswith("#")]
    assert len(rows) == 1 + 7  # the header and one row a gene
    result = slim_seqchat("models", cwd=tmp_path)
    assert result.returncode == 0 and "default" in result.stdout, result.stderr
    trna = next(r for r in read_records([str(ROOT / "examples" / "genes.fasta")]) if r.id == "tP(UGG)L")
    references = tmp_path / "refs.jsonl"
    references.write_text(json.dumps({"id": "tP-ref", "sequence": trna.sequence, "description": "a proline tRNA"}) + "\n")
    result = slim_seqchat("reference", "build", "-s", str(references), "-o", "refs", "-t", "1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    result = slim_seqchat("search", str(ROOT / "examples" / "genes.fasta"), "-r", "refs", "-o", "hits.tsv",
                          "-t", "1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "tP-ref" in (tmp_path / "hits.tsv").read_text()


def test_a_command_that_needs_an_extra_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [m for m in sys.modules if m == "scipy" or m.startswith("scipy.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "scipy", None)
    queries = tmp_path / "q.fa"
    queries.write_text(">q\nACGUACGUAC\n")
    reference = tmp_path / "r.jsonl"
    reference.write_text('{"id": "r", "sequence": "ACGUACGUAC", "text": "a tRNA"}\n')
    result = invoke(["baseline", "nearest", "--method", "kmer", str(queries), "--reference", str(reference)])
    assert_clean_failure(result.exit_code, result.stderr, "scipy", "pip install 'seqchat[eval]'")
