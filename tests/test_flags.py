"""Flags and inputs that are checked before any model loads: one `seqchat: error:` line,
a non-zero exit, and nothing left behind. Then a hypothesis fuzz of the same checks."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import yaml
from conftest import assert_clean_failure, invoke, make_records, write_fasta
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seqchat.system import available_cpus

MISSING_BUNDLE = "/nonexistent/bundle"


@pytest.fixture
def fasta(tmp_path: Path) -> Path:
    return write_fasta(tmp_path / "in.fa", make_records(3, seed=2))


def run_annotate(fasta: Path, *options: str, model: str = MISSING_BUNDLE, out: Path | None = None):
    output = out or fasta.parent / "out.tsv"
    return invoke(["annotate", str(fasta), "-m", model, "-o", str(output), "-q", *options])


@pytest.mark.parametrize(
    ("options", "flag"),
    [
        (["--top-p", "nan"], "--top-p"),
        (["--top-p", "0", "--temperature", "1"], "--top-p"),
        (["--top-p", "1.5"], "--top-p"),
        (["--temperature", "nan"], "--temperature"),
        (["--temperature", "inf"], "--temperature"),
        (["--seed", "-1"], "--seed"),
        (["--device", "gpu"], "--device"),
        (["--device", "cuda:x"], "--device"),
        (["--threads", str(available_cpus() + 1)], "--threads"),
        (["--threads", "0"], "--threads"),
        (["--parallel", "0"], "--parallel"),
        (["--force", "--resume"], "--resume"),
    ],
)
def test_a_bad_flag_is_one_line_before_the_bundle_is_read(fasta: Path, options: list[str], flag: str) -> None:
    """The bundle does not exist: the flag's error comes first, so no model was loaded."""
    result = run_annotate(fasta, *options)
    assert result.exit_code == 2
    assert_clean_failure(result.exit_code, result.stderr, flag)
    assert sorted(p.name for p in fasta.parent.iterdir()) == ["in.fa"]


def test_valid_flags_reach_the_bundle(fasta: Path) -> None:
    result = run_annotate(fasta, "--top-p", "0.9", "--temperature", "0.7", "--seed", "4294967295",
                          "--device", "cuda:1", "--threads", "1")
    assert_clean_failure(result.exit_code, result.stderr, MISSING_BUNDLE, "not found")


@pytest.mark.parametrize("where", ["a directory", "a missing folder"])
def test_an_output_that_cannot_be_a_file_is_refused_before_models_load(fasta: Path, tmp_path: Path, where: str) -> None:
    out = tmp_path if where == "a directory" else tmp_path / "nodir" / "x.tsv"
    result = run_annotate(fasta, out=out)
    expected = "is a directory" if where == "a directory" else "does not exist"
    assert_clean_failure(result.exit_code, result.stderr, str(out), expected)


@pytest.mark.parametrize("second", ["missing.fa", "."])
def test_a_bad_second_input_fails_before_models_load_and_leaves_nothing(
    tiny_bundle: Path, fasta: Path, second: str
) -> None:
    out = fasta.parent / "out.tsv"
    result = invoke(["annotate", str(fasta), str(fasta.parent / second), "-m", str(tiny_bundle),
                     "-o", str(out), "-q"])
    assert_clean_failure(result.exit_code, result.stderr, second.strip("."))
    assert not out.exists() and not Path(f"{out}.partial").exists()


def test_a_bad_record_late_in_a_file_fails_before_models_load(tmp_path: Path) -> None:
    good = "".join(f">r{i}\nACGU\n" for i in range(500))
    (tmp_path / "late.fa").write_text(good + ">bad\nAC!!GU\n")
    result = invoke(["annotate", str(tmp_path / "late.fa"), "-m", MISSING_BUNDLE, "-q"])
    # The record is reported, not the missing bundle: the file was read before any model.
    assert_clean_failure(result.exit_code, result.stderr, "late.fa", "bad")


def test_a_bad_record_on_stdin_leaves_no_empty_partial(tiny_bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.tsv"
    result = invoke(["annotate", "-", "-m", str(tiny_bundle), "-o", str(out), "-q"],
                    input=">a\nACGU\n>b\nAC!!GU\n")
    assert_clean_failure(result.exit_code, result.stderr, "b")
    assert list(tmp_path.iterdir()) == []


def test_a_failure_after_some_rows_says_where_they_are(tiny_bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.tsv"
    good = "".join(f">r{i}\nACGUACGU\n" for i in range(150))
    result = invoke(["annotate", "-", "-m", str(tiny_bundle), "-o", str(out), "-q", "-t", "1",
                     "--max-new-tokens", "2"], input=good + ">bad\nAC!!GU\n")
    message = assert_clean_failure(result.exit_code, result.stderr, "bad", f"{out}.partial", "--resume")
    rows = [line for line in Path(f"{out}.partial").read_text().splitlines() if line.startswith("r")]
    assert rows, message


@pytest.fixture
def question_bundle(bundle_copy) -> Path:
    bundle = bundle_copy("asks")
    config_path = bundle / "seqchat.yaml"
    config = yaml.safe_load(config_path.read_text())
    config["prompt"]["user"] = "{sequence}\n{question}"
    config["prompt"]["question"] = "Describe it."
    config_path.write_text(yaml.safe_dump(config))
    return bundle


def test_a_question_the_bundle_cannot_carry_is_refused(tiny_bundle: Path, fasta: Path) -> None:
    result = run_annotate(fasta, "--question", "Is it a tRNA?", model=str(tiny_bundle))
    assert_clean_failure(result.exit_code, result.stderr, "{question}", "--question")
    assert not list(fasta.parent.glob("out.tsv*"))


@pytest.mark.parametrize("field", ["{sequence}", "{evidence}", "{question}"])
def test_a_question_holding_a_prompt_field_is_refused(question_bundle: Path, fasta: Path, field: str) -> None:
    result = run_annotate(fasta, "--question", f"what is {field}?", model=str(question_bundle))
    assert_clean_failure(result.exit_code, result.stderr, field)


# --- fuzz: any value of any checked flag is accepted or refused in one line --------------

CHECKED_FLAGS = ["--top-p", "--temperature", "--seed", "--threads", "--device", "--parallel",
                 "--max-new-tokens", "--shard"]
values = st.one_of(
    st.text(max_size=12),
    st.integers(-(2**40), 2**40).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["nan", "-inf", "1e309", "0x10", "1_0", "cuda:", "cuda:01", "CPU", "0/0", "3/2"]),
)


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flag=st.sampled_from(CHECKED_FLAGS), value=values)
def test_fuzzed_flag_values_never_reach_a_model_or_a_traceback(fasta: Path, flag: str, value: str) -> None:
    if value.startswith("-"):
        value = f" {value}"  # a value, not an option (click strips no spaces from values)
    result = run_annotate(fasta, f"{flag}={value}")
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("seqchat: error: "), result.stderr
    assert "Traceback" not in result.stderr
    if result.exit_code == 2:
        assert flag in lines[0]
    else:  # accepted: the missing bundle is the first thing to fail
        assert result.exit_code == 1 and "not found" in lines[0], lines[0]
    assert sorted(p.name for p in fasta.parent.iterdir()) == ["in.fa"]


def all_commands():
    import click

    from seqchat.cli import cli

    def walk(command: click.Command, path: list[str]):
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                yield from walk(sub, [*path, name])
        else:
            yield " ".join(path), command

    return list(walk(cli, ["seqchat"]))


@pytest.mark.parametrize(("name", "command"), all_commands(), ids=[n for n, _c in all_commands()])
def test_every_option_of_every_command_has_help(name: str, command) -> None:
    import click

    missing = [p.opts[0] for p in command.params if isinstance(p, click.Option) and not p.help]
    assert not missing, f"{name}: {missing}"
    assert command.help, name


def test_a_question_longer_than_the_context_fails_before_output_opens(question_bundle: Path, fasta: Path) -> None:
    long_question = "why " * 400  # the tiny bundle's slots hold 256 tokens
    result = run_annotate(fasta, "--question", long_question, model=str(question_bundle))
    assert_clean_failure(result.exit_code, result.stderr, "256-token context", "--max-new-tokens")
    assert not list(fasta.parent.glob("out.tsv*"))


def test_a_library_annotator_refuses_a_question_too(tiny_bundle: Path) -> None:
    from seqchat.annotate import Annotator
    from seqchat.llm.prompt import PromptError

    with pytest.raises(PromptError, match="no {question} field"):
        Annotator.load(str(tiny_bundle), threads=1, question="Is it a tRNA?")


@pytest.mark.parametrize(
    ("name", "options", "words"),
    [
        ("a.tsv", ["-f", "jsonl"], ["'-f'", "jsonl clashes with", "a.tsv", "tsv file"]),
        ("a.json", ["-f", "tsv"], ["'-f'", "a.json"]),
        ("a.tsv.gz", ["-f", "json"], ["'-f'", "json clashes with", "a.tsv.gz", "tsv file"]),
    ],
)
def test_an_output_name_that_contradicts_the_format_is_refused(
    fasta: Path, name: str, options: list[str], words: list[str]
) -> None:
    result = run_annotate(fasta, *options, out=fasta.parent / name)
    assert result.exit_code == 2
    assert_clean_failure(result.exit_code, result.stderr, *words)


@pytest.mark.parametrize(
    ("name", "fmt"),
    [("a.jsonl", "jsonl"), ("a.JSON", "json"), ("a.txt", "tsv"), ("a.tsv.gz", "tsv"),
     ("a.jsonl.gz", "jsonl"), ("a.json.GZ", "json")],
)
def test_the_format_follows_the_output_name(tiny_bundle: Path, fasta: Path, name: str, fmt: str) -> None:
    out = fasta.parent / name
    result = run_annotate(fasta, "--max-new-tokens", "2", "-t", "1", model=str(tiny_bundle), out=out)
    assert result.exit_code == 0, result.stderr
    data = out.read_bytes()
    if name.lower().endswith(".gz"):
        assert data[:2] == b"\x1f\x8b"
        data = gzip.decompress(data)
    lines = data.decode().splitlines()
    if fmt == "tsv":
        assert lines[0].startswith("#") and any(line.startswith("id\t") for line in lines)
    elif fmt == "jsonl":
        assert all("id" in json.loads(line) for line in lines)
        sidecar = json.loads(Path(f"{out}.provenance.json").read_text())
        assert {"seqchat", "sha256_llm", "llama_cpp", "command"} <= set(sidecar["provenance"])
    else:
        assert set(json.loads("\n".join(lines))) == {"provenance", "results"}


@pytest.mark.parametrize(("name", "command"), all_commands(), ids=[n for n, _c in all_commands()])
def test_defaults_in_help_are_values(name: str, command) -> None:
    """A default that depends on the bundle or the machine still shows the value it takes."""
    import click

    from seqchat.system import available_cpus

    for option in (p for p in command.params if isinstance(p, click.Option)):
        if option.name == "threads":
            assert f"[default: {available_cpus()}," in option.help, name
        if option.name in ("max_new_tokens", "temperature", "top_p"):
            assert "[default: the bundle's generation." in option.help, name


def test_help_shows_the_generation_defaults_a_bundle_gets() -> None:
    from seqchat.bundle_schema import GenerationSection
    from seqchat.cli.options import GENERATION_DEFAULTS, bundle_default

    for key, value in GENERATION_DEFAULTS.items():
        assert GenerationSection.model_fields[key].default == value
    assert bundle_default("max_new_tokens").endswith("else 64]")


@pytest.mark.parametrize(
    ("quiet", "output", "stderr_tty", "stdout_tty", "shown"),
    [
        (False, "-", True, True, False),  # rows on the terminal: no bar over them
        (False, "-", True, False, True),  # rows piped on: the bar on the terminal
        (False, "out.tsv", True, True, True),
        (False, "out.tsv", False, True, False),  # stderr redirected
        (True, "out.tsv", True, True, False),
    ],
)
def test_the_progress_bar_never_shares_the_terminal_with_the_rows(
    quiet: bool, output: str, stderr_tty: bool, stdout_tty: bool, shown: bool
) -> None:
    from seqchat.cli.annotate import shows_progress

    assert shows_progress(quiet, output, stderr_tty=stderr_tty, stdout_tty=stdout_tty) is shown
