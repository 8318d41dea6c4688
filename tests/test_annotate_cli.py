"""`seqchat annotate` end to end: real processes for what only a process shows (stdin, a
kill, the exact stderr), click's CliRunner in this process for the rest."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shlex
import signal
import time
from pathlib import Path

import pytest

import seqchat
from conftest import (
    assert_clean_failure,
    finish_seqchat,
    invoke,
    make_records,
    run_seqchat,
    start_seqchat,
    without_command_line,
    write_fasta,
)
from seqchat.io.tables import read_table
from seqchat.io.writers import partial_path
from seqchat.system import available_cpus

NEEDS_TWO_CPUS = pytest.mark.skipif(available_cpus() < 2, reason="--threads 2 needs two CPUs")

COLUMNS = ["id", "length", "description", "n_tokens", "mean_logprob", "truncated", "confidence"]


def annotate(bundle: Path, inputs: list[str], output: Path, *extra: str):
    """In-process `seqchat annotate ... -o output` (one thread unless told); asserts success."""
    threads = [] if "-t" in extra else ["-t", "1"]
    result = invoke(["annotate", *inputs, "-m", str(bundle), "-o", str(output), "-q", *threads, *extra])
    assert result.exit_code == 0, (result.stderr, result.exception)
    assert output.exists() and not partial_path(output).exists()
    return result


def lines_of(text: str) -> list[str]:
    """Lines with their newline; only "\n" ends a line (descriptions may hold other breaks)."""
    assert text.endswith("\n")
    return [line + "\n" for line in text.split("\n")[:-1]]


def as_text(rows: list[dict]) -> list[dict[str, str]]:
    """Rows with every value as its text, so TSV and JSON rows compare."""
    return [{k: v if isinstance(v, str) else json.dumps(v) for k, v in row.items()} for row in rows]


@pytest.fixture(scope="module")
def reference(tiny_bundle: Path, small_fasta: Path, tmp_path_factory: pytest.TempPathFactory):
    """An uninterrupted in-process run over the small input: (tsv text, rows)."""
    out = tmp_path_factory.mktemp("reference") / "reference.tsv"
    annotate(tiny_bundle, [str(small_fasta)], out, "--parallel", "4", "-t", "1")
    text = out.read_text()
    return text, read_table(out)[1]


@pytest.fixture(scope="module")
def reference_serial(tiny_bundle: Path, small_fasta: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("reference") / "serial.tsv"
    annotate(tiny_bundle, [str(small_fasta)], out, "--parallel", "1", "-t", "1")
    return out.read_text(), read_table(out)[1]


# --- real processes ----------------------------------------------------------------------
# A `seqchat` process spends seconds importing torch, transformers and multimolecule, so the
# real processes of this module start together when the module begins and run while the
# in-process tests do; the tests that check them wait for them.

BAD_INPUTS = {
    "empty": (b"", ["empty.fa", "no FASTA records"]),
    "protein": (
        b">sp|P69905|HBA_HUMAN Hemoglobin\nMVLSPADKTNVKAAWGKVGAHAGEYGAEALERMF\n",
        ["protein.fa", "sp|P69905|HBA_HUMAN", "'L'", "position 3", "protein"],
    ),
    "binary": (bytes(range(256)) * 8, ["binary.fa", "binary"]),
}


@pytest.fixture(scope="module", autouse=True)
def real_runs(tiny_bundle: Path, small_records, tmp_path_factory: pytest.TempPathFactory):
    directory = tmp_path_factory.mktemp("real")
    half = len(small_records) // 2
    plain = write_fasta(directory / "first.fa", small_records[:half]).read_bytes()
    (directory / "first.fa.gz").write_bytes(gzip.compress(plain))
    second = write_fasta(directory / "second.fa", small_records[half:]).read_bytes()
    runs = {}
    args = ["annotate", "first.fa.gz", "-", "-m", str(tiny_bundle), "--parallel", "4", "-t", "1"]
    runs["stdin"] = (args, start_seqchat(args, cwd=directory, stdin=second))
    for name, (content, _) in BAD_INPUTS.items():
        (directory / f"{name}.fa").write_bytes(content)
        args = ["annotate", f"{name}.fa", "-m", str(tiny_bundle), "-o", f"{name}.tsv"]
        runs[name] = (args, start_seqchat(args, cwd=directory))
    yield directory, runs
    for _, process in runs.values():
        process.kill()
        process.wait()


def test_version_is_exact() -> None:
    result = run_seqchat(["--version"], cwd=Path.cwd())
    assert result.returncode == 0
    assert result.stdout == f"seqchat {seqchat.__version__}\n"
    assert seqchat.__version__ == "0.1.0"
    assert result.stderr == ""


# --- formats -----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["tsv", "jsonl", "json"])
def test_each_format_reads_back(
    tiny_bundle: Path, small_fasta: Path, small_records, reference, tmp_path: Path, fmt: str
) -> None:
    out = tmp_path / f"out.{fmt}"
    annotate(tiny_bundle, [str(small_fasta)], out, "-f", fmt, "--parallel", "4", "-t", "1")
    provenance, rows = read_table(out)
    assert all(list(r) == COLUMNS for r in rows)
    # Input order, although the 150-nt record finishes after shorter ones do.
    assert [r["id"] for r in rows] == [identifier for identifier, _ in small_records]
    assert [int(r["length"]) for r in rows] == [len(seq) for _, seq in small_records]
    reference_provenance, _ = read_table_text(reference[0], tmp_path)
    assert provenance == reference_provenance
    assert as_text(rows) == reference[1]
    text = out.read_text()
    if fmt == "json":
        document = json.loads(text)
        assert list(document) == ["provenance", "results"]
        assert [r["id"] for r in document["results"]] == [r["id"] for r in reference[1]]
        assert all(isinstance(r["length"], int) and isinstance(r["mean_logprob"], float) for r in rows)
    elif fmt == "jsonl":
        lines = [json.loads(line) for line in lines_of(text)]
        assert [row["id"] for row in lines] == [row["id"] for row in reference[1]]
    else:
        assert text == reference[0]


def read_table_text(text: str, tmp_path: Path):
    path = tmp_path / "reference-copy.tsv"
    path.write_text(text)
    return read_table(path)


# --- shards ------------------------------------------------------------------------------


def test_shards_together_equal_the_whole(tiny_bundle: Path, small_fasta: Path, reference_serial, tmp_path: Path) -> None:
    parts = []
    for index in (0, 1):
        out = tmp_path / f"shard{index}.jsonl"
        annotate(tiny_bundle, [str(small_fasta)], out, "-f", "jsonl", "--shard", f"{index}/2", "--parallel", "1")
        parts.append(read_table(out)[1])
    whole = reference_serial[1]
    assert [r["id"] for r in parts[0]] == [r["id"] for r in whole[0::2]]
    assert [r["id"] for r in parts[1]] == [r["id"] for r in whole[1::2]]
    merged = sorted(parts[0] + parts[1], key=lambda r: [w["id"] for w in whole].index(r["id"]))
    assert as_text(merged) == whole


@pytest.mark.parametrize(("shard", "words"), [("2/2", "need 0 <= I < N"), ("1-4", "is not I/N"), ("0/0", "need 0 <= I < N")])
def test_bad_shard_is_a_usage_error(tiny_bundle: Path, small_fasta: Path, tmp_path: Path, shard: str, words: str) -> None:
    result = invoke(["annotate", str(small_fasta), "-m", str(tiny_bundle), "-o", str(tmp_path / "x.tsv"), "--shard", shard])
    assert result.exit_code == 2
    assert_clean_failure(result.exit_code, result.stderr, "--shard", words)
    assert not (tmp_path / "x.tsv").exists()


# --- resume ------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["tsv", "jsonl", "json"])
@pytest.mark.parametrize("parallel", ["1", "4"])
def test_resume_after_a_partial_run(
    tiny_bundle: Path, small_fasta: Path, tmp_path: Path, fmt: str, parallel: str
) -> None:
    settings = ["--parallel", parallel, "-t", "1"]
    complete = tmp_path / f"complete.{fmt}"
    annotate(tiny_bundle, [str(small_fasta)], complete, "-f", fmt, *settings)
    # The partial of an interrupted run: header, the first 3 rows, and a row cut short.
    # (JSON Lines and JSON are kept as rows after a provenance line until they are complete.)
    k = 3
    resumed = tmp_path / f"resumed.{fmt}"
    if fmt == "tsv":
        lines = lines_of(complete.read_text())
        n_header = next(i for i, line in enumerate(lines) if not line.startswith("#")) + 1
        header, rows = "".join(lines[:n_header]), lines[n_header:]
    else:
        source = tmp_path / "complete-lines.jsonl"
        annotate(tiny_bundle, [str(small_fasta)], source, "-f", "jsonl", *settings)
        header = json.dumps({"provenance": read_table(source)[0], "format": fmt}) + "\n"
        rows = lines_of(source.read_text())
    partial_path(resumed).write_text(header + "".join(rows[:k]) + rows[k][: len(rows[k]) // 2])

    annotate(tiny_bundle, [str(small_fasta)], resumed, "-f", fmt, "--resume", *settings)

    assert resumed.read_text() == complete.read_text()
    ids = [r["id"] for r in read_table(resumed)[1]]
    assert len(ids) == len(set(ids)) == 8


def test_resume_refuses_a_partial_from_other_settings(tiny_bundle: Path, small_fasta: Path, tmp_path: Path) -> None:
    complete = tmp_path / "complete.tsv"
    annotate(tiny_bundle, [str(small_fasta)], complete, "--max-new-tokens", "5")
    lines = lines_of(complete.read_text())
    out = tmp_path / "out.tsv"
    partial_path(out).write_text("".join(lines[:-3]))
    result = invoke(["annotate", str(small_fasta), "-m", str(tiny_bundle), "-o", str(out), "--resume", "-q", "-t", "1"])
    assert_clean_failure(result.exit_code, result.stderr, "cannot resume", "decoding", "--force")
    assert partial_path(out).read_text() == "".join(lines[:-3])
    assert not out.exists()


@pytest.mark.parametrize(
    "key", ["llama_cpp", "encoder_runtime", "device", "sha256_seqchat.yaml", "sha256_llm"]
)
def test_resume_refuses_a_partial_from_another_runtime_or_config(
    tiny_bundle: Path, small_fasta: Path, tmp_path: Path, key: str
) -> None:
    complete = tmp_path / "complete.tsv"
    annotate(tiny_bundle, [str(small_fasta)], complete)
    lines = lines_of(complete.read_text())
    assert sum(line.startswith(f"# {key}: ") for line in lines) == 1
    edited = [f"# {key}: something else\n" if line.startswith(f"# {key}: ") else line for line in lines]
    out = tmp_path / "out.tsv"
    partial_path(out).write_text("".join(edited[:-3]))
    result = invoke(["annotate", str(small_fasta), "-m", str(tiny_bundle), "-o", str(out), "--resume", "-q", "-t", "1"])
    assert_clean_failure(result.exit_code, result.stderr, "cannot resume", repr(key), "something else")
    assert not out.exists()


def test_resume_needs_an_output_file(tiny_bundle: Path, small_fasta: Path) -> None:
    result = invoke(["annotate", str(small_fasta), "-m", str(tiny_bundle), "--resume"])
    assert result.exit_code == 2 and "--resume needs an output file" in result.stderr


def count_rows(partial: Path) -> int:
    """Complete TSV data rows in a partial file."""
    try:
        text = partial.read_bytes()
    except FileNotFoundError:
        return 0
    lines = text.split(b"\n")[:-1]  # the last piece is unfinished (or empty)
    return max(0, sum(1 for line in lines if not line.startswith(b"#")) - 1)


def test_resume_after_sigkill(tiny_bundle: Path, tmp_path: Path) -> None:
    big = write_fasta(tmp_path / "big.fa", make_records(600, seed=9))
    out = tmp_path / "killed.tsv"
    args = ["annotate", big.name, "-m", str(tiny_bundle), "-o", out.name, "--parallel", "1", "-t", "1", "-q"]
    process = start_seqchat(args, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 120
        while count_rows(partial_path(out)) < 2:
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline, "no rows after 120 s"
            time.sleep(0.002)
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == -signal.SIGKILL
    assert not out.exists(), "the run finished before it could be killed"
    written = count_rows(partial_path(out))
    assert 2 <= written < 600

    uninterrupted = tmp_path / "uninterrupted.tsv"
    annotate(tiny_bundle, [str(big)], uninterrupted, "--parallel", "1", "-t", "1")
    result = invoke(["annotate", str(big), "-m", str(tiny_bundle), "-o", str(out), "--parallel", "1", "-t", "1", "-q", "--resume"])
    assert result.exit_code == 0, result.stderr
    assert not partial_path(out).exists()
    assert without_command_line(out.read_text()) == without_command_line(uninterrupted.read_text())
    ids = [row["id"] for row in read_table(out)[1]]
    assert ids == [f"s{i:04d}" for i in range(600)]
    # The header is the killed run's: the command of the real process.
    assert read_table(out)[0]["command"] == shlex.join(["seqchat", *args])


# --- existing output ---------------------------------------------------------------------


def test_existing_output_needs_force(tiny_bundle: Path, small_fasta: Path, reference, tmp_path: Path) -> None:
    out = tmp_path / "out.tsv"
    out.write_text("precious\n")
    args = ["annotate", str(small_fasta), "-m", str(tiny_bundle), "-o", str(out), "-q", "--parallel", "4", "-t", "1"]
    result = invoke(args)
    assert_clean_failure(result.exit_code, result.stderr, str(out), "already exists", "--force")
    assert out.read_text() == "precious\n"
    assert not partial_path(out).exists()

    result = invoke([*args, "--force"])
    assert result.exit_code == 0, result.stderr
    assert out.read_text() == reference[0]


def test_existing_output_is_refused_before_models_load(small_fasta: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.tsv"
    out.write_text("precious\n")
    # The bundle does not exist: the output is checked first, so that is not what fails.
    result = invoke(["annotate", str(small_fasta), "-m", str(tmp_path / "no-bundle"), "-o", str(out), "-q"])
    assert_clean_failure(result.exit_code, result.stderr, str(out), "already exists", "--force")
    assert "no-bundle" not in result.stderr


def test_leftover_partial_needs_resume_or_force(tiny_bundle: Path, small_fasta: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.tsv"
    partial_path(out).write_text("# seqchat: 0.1.0\n")
    args = ["annotate", str(small_fasta), "-m", str(tiny_bundle), "-o", str(out), "-q", "-t", "1"]
    result = invoke(args)
    assert_clean_failure(result.exit_code, result.stderr, "out.tsv.partial", "--resume", "--force")
    result = invoke([*args, "--force"])
    assert result.exit_code == 0, result.stderr
    assert len(read_table(out)[1]) == 8


# --- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize("threads", ["1", pytest.param("2", marks=NEEDS_TWO_CPUS)])
def test_bad_input_in_process(tiny_bundle: Path, small_records, tmp_path: Path, threads: str) -> None:
    write_fasta(tmp_path / "a.fa", small_records[:3])
    write_fasta(tmp_path / "b.fa", [("s0001", "ACGT"), ("other", "ACGU")])
    (tmp_path / "gap.fa").write_text(">ok\nACGT\n>aligned\nAC-GT\n")
    cases = {
        "gap": (["gap.fa"], ["gap.fa", "'aligned'", "'-'", "position 3", "gaps"]),
        "missing": (["nope.fa"], ["nope.fa", "no such file"]),
        # Found when the second file is read through, before the models load.
        "duplicate": (["a.fa", "b.fa"], ["b.fa", "duplicate", "'s0001'", "a.fa"]),
    }
    for name, (inputs, words) in cases.items():
        out = tmp_path / f"{name}.tsv"
        paths = [str(tmp_path / i) for i in inputs]
        result = invoke(["annotate", *paths, "-m", str(tiny_bundle), "-o", str(out), "-q", "-t", threads, "--parallel", "4"])
        assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
        assert_clean_failure(result.exit_code, result.stderr, *words)
        assert not out.exists(), name


# --- bad bundles -------------------------------------------------------------------------


def bundle_failure(bundle: Path, small_fasta: Path, tmp_path: Path, *words: str, extra=()) -> None:
    out = tmp_path / "out.tsv"
    result = invoke(["annotate", str(small_fasta), "-m", str(bundle), "-o", str(out), "-q", "-t", "1", *extra])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert_clean_failure(result.exit_code, result.stderr, *words)
    assert not out.exists() and not partial_path(out).exists()


def test_missing_projector_weights(bundle_copy, small_fasta: Path, tmp_path: Path) -> None:
    bundle = bundle_copy()
    (bundle / "projector.safetensors").unlink()
    bundle_failure(bundle, small_fasta, tmp_path, "projector.safetensors", "does not exist")


def test_garbage_projector_weights(bundle_copy, small_fasta: Path, tmp_path: Path) -> None:
    bundle = bundle_copy()
    (bundle / "projector.safetensors").write_bytes(os.urandom(3000))
    bundle_failure(bundle, small_fasta, tmp_path, str(bundle / "projector.safetensors"), "safetensors")


def test_projector_weights_of_another_shape(bundle_copy, small_fasta: Path, tmp_path: Path) -> None:
    from seqchat.encode.projector import build_projector, save_projector
    from seqchat.encode.specs import ProjectorConfig

    bundle = bundle_copy()
    save_projector(build_projector(ProjectorConfig("linear", 32, 48)), bundle / "projector.safetensors")
    bundle_failure(bundle, small_fasta, tmp_path, "projector.safetensors", "do not match", "32 -> 64")


def test_truncated_llm(bundle_copy, small_fasta: Path, tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    bundle = bundle_copy()
    data = (bundle / "llm.gguf").read_bytes()
    (bundle / "llm.gguf").write_bytes(data[: len(data) // 2])
    bundle_failure(bundle, small_fasta, tmp_path, str(bundle / "llm.gguf"), "could not load")
    # llama.cpp's own logging (C side, straight to file descriptor 2) stays silent.
    assert capfd.readouterr().err == ""


def test_bundle_path_outside_the_bundle(bundle_copy, small_fasta: Path, tmp_path: Path) -> None:
    import yaml

    bundle = bundle_copy()
    outside = tmp_path / "x.gguf"
    (bundle / "llm.gguf").rename(outside)
    config = yaml.safe_load((bundle / "seqchat.yaml").read_text())
    config["llm"]["gguf"] = "../x.gguf"
    (bundle / "seqchat.yaml").write_text(yaml.safe_dump(config))
    bundle_failure(bundle, small_fasta, tmp_path, "../x.gguf", "outside the bundle", "--allow-external-paths")
    # Allowed explicitly, the same bundle works.
    out = tmp_path / "allowed.tsv"
    annotate(bundle, [str(small_fasta)], out, "--allow-external-paths")
    assert len(read_table(out)[1]) == 8


def test_unknown_bundle(small_fasta: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEQCHAT_HOME", str(tmp_path / "home"))
    bundle_failure(Path("no-such-bundle"), small_fasta, tmp_path, "'no-such-bundle'", "not found")


# --- the real processes started with the module ---------------------------------------


def test_real_process_reads_gzip_and_stdin_and_writes_stdout(
    tiny_bundle: Path, small_records, reference, real_runs, tmp_path: Path
) -> None:
    """Two inputs, a gzip file and a pipe on stdin, one after the other; TSV on stdout."""
    args, process = real_runs[1]["stdin"]
    result = finish_seqchat(process)

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no progress bar without a terminal, no warnings
    out = tmp_path / "stdout.tsv"
    out.write_text(result.stdout)
    provenance, rows = read_table(out)
    assert [row["id"] for row in rows] == [identifier for identifier, _ in small_records]
    assert [int(row["length"]) for row in rows] == [len(seq) for _, seq in small_records]
    assert max(len(seq) for _, seq in small_records) > 64  # longer than the encoder window
    assert all(row["description"] and int(row["n_tokens"]) > 0 for row in rows)
    assert all(float(row["mean_logprob"]) < 0 for row in rows)
    # Same records, same settings, one stream: the same answers as the file run.
    assert rows == reference[1]

    assert provenance["seqchat"] == seqchat.__version__
    assert provenance["bundle"] == f"tiny ({tiny_bundle})"
    assert provenance["command"] == shlex.join(["seqchat", *args])
    sha = lambda path: hashlib.sha256(path.read_bytes()).hexdigest()  # noqa: E731
    assert provenance["sha256_llm"] == sha(tiny_bundle / "llm.gguf")
    assert provenance["sha256_projector"] == sha(tiny_bundle / "projector.safetensors")
    assert provenance["sha256_encoder/model.safetensors"] == sha(tiny_bundle / "encoder" / "model.safetensors")
    assert "max_new_tokens=12" in provenance["decoding"]
    header = result.stdout.split("\n")
    for line in ("# seqchat: 0.1.0", "# bundle: ", "# sha256_llm: ", "# command: seqchat annotate"):
        assert any(h.startswith(line) for h in header), line


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_input_real_process(real_runs, name: str) -> None:
    directory, runs = real_runs
    result = finish_seqchat(runs[name][1])
    assert result.stdout == ""
    assert_clean_failure(result.returncode, result.stderr, *BAD_INPUTS[name][1])
    # Bad input is found before the models load and before the output opens.
    assert not (directory / f"{name}.tsv").exists()
    assert not partial_path(directory / f"{name}.tsv").exists()


# --- batching and threads ----------------------------------------------------------------
# Last in the module: with the real processes above finished, two threads have two cores.
# (Even so, spinning threads crawl on a busy machine: the two-thread run is kept small.)


@pytest.fixture(scope="module")
def mixed_fasta(tmp_path_factory: pytest.TempPathFactory) -> Path:
    lengths = [5, 200, 17, 64, 90, 33, 1, 150, 48, 65, 12, 120, 8, 77]
    return write_fasta(tmp_path_factory.mktemp("mixed") / "mixed.fa", make_records(0, seed=4, lengths=lengths))


@pytest.fixture(scope="module")
def batch_runs(tiny_bundle: Path, mixed_fasta: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    directory = tmp_path_factory.mktemp("batching")
    texts = {}
    for parallel in ("1", "4"):
        out = directory / f"parallel{parallel}.tsv"
        annotate(tiny_bundle, [str(mixed_fasta)], out, "--parallel", parallel, "-t", "1")
        texts[parallel] = out.read_text()
    return texts


@NEEDS_TWO_CPUS
def test_threads_do_not_change_the_output(tiny_bundle: Path, small_fasta: Path, tmp_path: Path) -> None:
    texts = []
    for threads in ("1", "2"):
        out = tmp_path / f"threads{threads}.tsv"
        annotate(tiny_bundle, [str(small_fasta)], out, "--parallel", "4", "--max-new-tokens", "6", "-t", threads)
        texts.append(out.read_text())
    assert without_command_line(texts[0]) == without_command_line(texts[1])
    assert len(read_table_text(texts[0], tmp_path)[1]) == 8


def test_parallel_slots_give_the_same_answers(batch_runs: dict[str, str], tmp_path: Path) -> None:
    one = read_table_text(batch_runs["1"], tmp_path)[1]
    four = read_table_text(batch_runs["4"], tmp_path)[1]
    assert len(one) == len(four) == 14
    for a, b in zip(one, four):
        assert {k: v for k, v in a.items() if k != "mean_logprob"} == {
            k: v for k, v in b.items() if k != "mean_logprob"
        }
        assert float(a["mean_logprob"]) == pytest.approx(float(b["mean_logprob"]), abs=1e-3)


def test_parallel_slots_give_byte_identical_output(batch_runs: dict[str, str]) -> None:
    assert without_command_line(batch_runs["1"]) == without_command_line(batch_runs["4"])
