"""Ways a run could lose or corrupt rows: inputs that can be read only once, two runs on one
output, a resume in another format, runs sharing a cache, ids that look like comments,
Ctrl-C."""

from __future__ import annotations

import bz2
import csv
import gzip
import os
import signal
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest
from conftest import (
    NEEDS_TRAIN,
    assert_clean_failure,
    finish_seqchat,
    invoke,
    make_records,
    seqchat_executable,
    start_seqchat,
    subprocess_env,
    write_fasta,
)

from seqchat.cli.annotate import check_file_inputs
from seqchat.io.cache import CachedAnswer, ResultCache
from seqchat.io.tables import escape_tsv, read_table, unescape_tsv
from seqchat.io.writers import (
    OutputLockedError,
    ResumeMismatchError,
    check_output_path,
    open_writer,
    partial_path,
)

COLUMNS = ("id", "length", "description")
PROVENANCE = {"seqchat": "0.1.0", "prompt": "Describe it"}
ROWS = [{"id": f"s{i}", "length": i, "description": f"row {i}"} for i in range(3)]
N_PIPED = 200  # records enough that the reader's first buffer does not hold them all
FAST = ["-t", "1", "--parallel", "8", "--max-new-tokens", "2"]


# --- inputs read once: a pipe, stdin -----------------------------------------------------
# Real processes (seconds to start each), all started when the module begins.


@pytest.fixture(scope="module")
def piped_runs(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory):
    directory = tmp_path_factory.mktemp("piped")
    fasta = write_fasta(directory / "in.fa", make_records(N_PIPED, seed=3))
    runs: dict[str, subprocess.Popen] = {}
    for quiet in ("", "-q"):
        # bash hands `<(cat in.fa)` over as /dev/fd/N, a pipe.
        script = f'"$0" annotate <(cat in.fa) -m "$1" -o pipe{quiet}.tsv {" ".join(FAST)} {quiet}'
        runs[f"pipe{quiet}"] = subprocess.Popen(
            ["bash", "-c", script, seqchat_executable(), str(tiny_bundle)], cwd=directory,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=subprocess_env(),
        )
        args = ["annotate", "-", "-m", str(tiny_bundle), "-o", f"stdin{quiet}.tsv", *FAST]
        runs[f"stdin{quiet}"] = start_seqchat([*args, quiet] if quiet else args, directory, fasta.read_bytes())
    yield directory, runs
    for process in runs.values():
        process.kill()
        process.wait()


@pytest.mark.parametrize("name", ["pipe", "pipe-q", "stdin", "stdin-q"])
def test_input_read_once_keeps_every_record(piped_runs, name: str) -> None:
    directory, runs = piped_runs
    result = finish_seqchat(runs[name])
    assert result.returncode == 0, result.stderr
    ids = [row["id"] for row in read_table(directory / f"{name}.tsv")[1]]
    assert ids == [f"s{i:04d}" for i in range(N_PIPED)]


def test_records_are_counted_only_in_regular_files(tmp_path: Path) -> None:
    plain = write_fasta(tmp_path / "a.fa", make_records(5, seed=1))
    (tmp_path / "b.fa.gz").write_bytes(gzip.compress(plain.read_bytes().replace(b">s", b">b")))
    (tmp_path / "c.fa.bz2").write_bytes(bz2.compress(plain.read_bytes().replace(b">s", b">c")))
    files = [str(plain), str(tmp_path / "b.fa.gz"), str(tmp_path / "c.fa.bz2")]
    assert check_file_inputs(files) == 15
    assert check_file_inputs([*files, "-"]) is None
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, b">x\nACGT\n")
        os.close(write_end)
        assert check_file_inputs([str(plain), f"/dev/fd/{read_end}"]) is None
        assert os.read(read_end, 100) == b">x\nACGT\n"  # left for the run to read
    finally:
        os.close(read_end)


# --- one run per output ------------------------------------------------------------------


def write_rows(path: Path, fmt: str = "tsv", rows=ROWS, **options) -> None:
    with open_writer(path, fmt, COLUMNS, PROVENANCE, **options) as writer:
        for row in rows:
            writer.write(row)


@pytest.mark.parametrize("options", [{}, {"force": True}, {"resume": True}], ids=["plain", "force", "resume"])
def test_a_second_writer_of_a_live_output_fails_at_once(tmp_path: Path, options: dict) -> None:
    path = tmp_path / "out.tsv"
    with open_writer(path, "tsv", COLUMNS, PROVENANCE) as first:
        first.write(ROWS[0])
        with pytest.raises(OutputLockedError, match="another seqchat run is writing") as caught:
            write_rows(path, **options)
        assert str(partial_path(path)) in str(caught.value) and "\n" not in str(caught.value)
        with pytest.raises(OutputLockedError):
            check_output_path(path, **{"force": False, "resume": False, **options})
        first.write(ROWS[1])
    assert [row["id"] for row in read_table(path)[1]] == ["s0", "s1"]
    write_rows(path, force=True)  # the run is over: its lock with it
    assert len(read_table(path)[1]) == 3


@pytest.fixture
def live_run(tiny_bundle: Path, tmp_path: Path):
    """A real run over more records than it finishes while the test looks at it, once its
    first rows are written: (process, output)."""
    fasta = write_fasta(tmp_path / "many.fa", make_records(3000, seed=9))
    out = tmp_path / "live.tsv"
    args = ["annotate", fasta.name, "-m", str(tiny_bundle), "-o", out.name, "--parallel", "1", "-t", "1", "-q"]
    process = start_seqchat(args, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 120
        while len(open_lines(partial_path(out))) < 3:
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline, "no rows after 120 s"
            time.sleep(0.01)
        yield process, out
    finally:
        process.kill()
        process.wait()


def open_lines(path: Path) -> list[bytes]:
    """The complete data lines of a TSV file (none if it does not exist yet)."""
    try:
        lines = path.read_bytes().split(b"\n")[:-1]
    except FileNotFoundError:
        return []
    return [line for line in lines if not line.startswith(b"#")][1:]


def test_a_second_run_on_a_live_output_fails_before_models_load(live_run, tmp_path: Path) -> None:
    process, out = live_run
    for flags in ([], ["--force"], ["--resume"]):
        before = partial_path(out).read_bytes()
        # The bundle does not exist: the lock is checked first, so that is not what fails.
        args = ["annotate", str(tmp_path / "many.fa"), "-m", str(tmp_path / "no-bundle"), "-o", str(out), "-q"]
        result = invoke([*args, *flags])
        assert_clean_failure(result.exit_code, result.stderr, str(partial_path(out)), "another seqchat run is writing")
        assert process.poll() is None
        assert partial_path(out).read_bytes().startswith(before)


# --- ctrl-C ------------------------------------------------------------------------------


def test_ctrl_c_says_where_the_rows_are_and_how_to_continue(live_run) -> None:
    process, out = live_run
    process.send_signal(signal.SIGINT)
    result = finish_seqchat(process, timeout=60)
    assert result.returncode == 130, result.stderr
    assert result.stderr.strip().splitlines() == [
        (
            f"seqchat: interrupted; the rows written so far are in {out.name}.partial: "
            "rerun with --resume to continue"
        )
    ]
    assert len(open_lines(partial_path(out))) >= 3 and not out.exists()
    check_output_path(out, force=False, resume=True)  # the lock went with the run


# --- resume across formats ---------------------------------------------------------------


def interrupted(path: Path, fmt: str) -> None:
    with pytest.raises(KeyboardInterrupt), open_writer(path, fmt, COLUMNS, PROVENANCE) as writer:
        writer.write(ROWS[0])
        raise KeyboardInterrupt


@pytest.mark.parametrize(("before", "now"), [("json", "jsonl"), ("jsonl", "tsv"), ("tsv", "json")])
def test_resume_in_another_format_is_refused(tmp_path: Path, before: str, now: str) -> None:
    path = tmp_path / "out"
    interrupted(path, before)
    with pytest.raises(ResumeMismatchError, match=f"holds {before} output, this run writes {now}"):
        open_writer(path, now, COLUMNS, PROVENANCE, resume=True)
    with open_writer(path, before, COLUMNS, PROVENANCE, resume=True) as writer:
        assert writer.completed_ids == {"s0"}
        writer.write(ROWS[1])
    provenance, rows = read_table(path)
    assert provenance == PROVENANCE and [row["id"] for row in rows] == ["s0", "s1"]


def test_a_json_run_resumes_unmarked_json_lines(tmp_path: Path) -> None:
    """What a JSON run's partial was before partials said what they become."""
    path = tmp_path / "out"
    interrupted(path, "jsonl")
    with open_writer(path, "json", COLUMNS, PROVENANCE, resume=True) as writer:
        assert writer.completed_ids == {"s0"}
    assert read_table(path) == (PROVENANCE, ROWS[:1])


# --- a cache shared by runs --------------------------------------------------------------


@NEEDS_TRAIN
def test_two_runs_write_one_cache_without_waiting_for_each_other(tmp_path: Path) -> None:
    """The first run keeps answers it has not saved yet while it generates more; the second
    saves its own (some for the same sequences) meanwhile, and neither waits for the other."""
    generating = threading.Event()
    errors: list[BaseException] = []

    def run(tag: str, sequences: range, pause: threading.Event | None) -> None:
        try:
            with ResultCache(tmp_path / "cache", {"model": "m"}) as cache:
                for i in sequences:
                    if cache.get(f"S{i}") is None:
                        cache.put(f"S{i}", CachedAnswer(f"{tag}{i}", i, -1.0))
                    if pause is not None and i == sequences[0]:
                        pause.wait(30)
        except Exception as error:  # noqa: BLE001 (reported by the test)
            errors.append(error)

    first = threading.Thread(target=run, args=("a", range(40), generating))
    first.start()
    second = threading.Thread(target=run, args=("b", range(20, 80), None))
    second.start()
    second.join(timeout=20)
    still_waiting = second.is_alive()
    generating.set()
    first.join(timeout=60)
    second.join(timeout=60)
    assert not still_waiting, "the second run waited for the first one's unsaved answers"
    assert errors == []
    with sqlite3.connect(tmp_path / "cache" / "seqchat-cache.sqlite") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert db.execute("SELECT COUNT(*) FROM answers").fetchone() == (80,)
    with ResultCache(tmp_path / "cache", {"model": "m"}) as cache:
        assert cache.get("S79") == CachedAnswer("b79", 79, -1.0)


def test_a_cache_finds_its_own_unsaved_answers(tmp_path: Path) -> None:
    with ResultCache(tmp_path / "cache", {}) as cache:
        cache.put("ACGT", CachedAnswer("x", 1, -0.5))
        assert cache.get("ACGT") == CachedAnswer("x", 1, -0.5)
        assert (cache.hits, cache.misses) == (1, 0)


# --- ids that look like comments ---------------------------------------------------------

AWKWARD = ["#x", "a#b", 'say"hi"', '"quoted', "\\x23", "##"]


@pytest.mark.parametrize("value", [*AWKWARD, "tab\t#\nline"])
def test_tsv_cells_hold_no_hash(value: str) -> None:
    assert "#" not in escape_tsv(value)
    assert unescape_tsv(escape_tsv(value)) == value


def test_awkward_ids_round_trip_through_tsv_readers(tiny_bundle: Path, tmp_path: Path) -> None:
    fasta = write_fasta(tmp_path / "in.fa", [(identifier, "ACGTACGTAC") for identifier in AWKWARD])
    out = tmp_path / "out.tsv"
    result = invoke(["annotate", str(fasta), "-m", str(tiny_bundle), "-o", str(out), "-q", "-t", "1"])
    assert result.exit_code == 0, result.stderr
    rows = read_table(out)[1]
    assert [row["id"] for row in rows] == AWKWARD
    table = out.read_text().split("\n")[len(read_table(out)[0]):]
    assert not any(line.startswith("#") for line in table)

    pandas = pytest.importorskip("pandas")
    frame = pandas.read_csv(out, sep="\t", comment="#", quoting=csv.QUOTE_NONE, dtype=str, keep_default_na=False)
    assert list(frame.columns) == list(rows[0])
    assert [unescape_tsv(identifier) for identifier in frame["id"]] == AWKWARD
    assert [unescape_tsv(text) for text in frame["description"]] == [row["description"] for row in rows]
