import gzip
import json

import pytest

from seqchat.errors import SeqchatError
from seqchat.io.tables import (
    OutputFormatError,
    escape_tsv,
    iter_table_rows,
    read_table,
    unescape_tsv,
)
from seqchat.io.writers import (
    ANNOTATION_COLUMNS,
    OutputExistsError,
    OutputUsageError,
    ResumeMismatchError,
    open_writer,
    partial_path,
    provenance_sidecar,
)

PROVENANCE = {"seqchat": "0.1.0", "bundle_sha256": "abc123", "prompt": "Describe\nit"}
ROWS = [
    {"id": "s1", "length": 4, "description": "a tRNA", "n_tokens": 3, "mean_logprob": -0.25,
     "truncated": False},
    {
        "id": "s2",
        "length": 7,
        "description": "tab\there\nnew line \\ back",
        "n_tokens": 9,
        "mean_logprob": -1.5,
        "truncated": True,
    },
]


def write_rows(path, fmt="tsv", rows=ROWS, **options):
    with open_writer(path, fmt, ANNOTATION_COLUMNS, PROVENANCE, **options) as writer:
        for row in rows:
            writer.write(row)
    return writer


def as_strings(rows):
    """Rows as TSV gives them back: every value as text, booleans as JSON spells them."""
    return [{key: json.dumps(value) if isinstance(value, bool) else str(value)
             for key, value in row.items()} for row in rows]


@pytest.mark.parametrize(
    "value", ["plain", "a\tb", "line\nbreak\r\n", "back\\slash", "\\t literal", ""]
)
def test_tsv_escape_round_trips(value):
    escaped = escape_tsv(value)
    assert not any(char in escaped for char in "\t\n\r")
    assert unescape_tsv(escaped) == value


def test_tsv_layout(tmp_path):
    path = tmp_path / "out.tsv"
    write_rows(path)
    lines = path.read_text().splitlines()
    assert lines[:4] == [
        "# seqchat: 0.1.0",
        "# bundle_sha256: abc123",
        "# prompt: Describe\\nit",
        "id\tlength\tdescription\tn_tokens\tmean_logprob\ttruncated",
    ]
    assert lines[5] == "s2\t7\ttab\\there\\nnew line \\\\ back\t9\t-1.5\ttrue"
    assert len(lines) == 6


def test_tsv_reads_back_as_strings(tmp_path):
    path = tmp_path / "out.tsv"
    write_rows(path)
    assert read_table(path) == (PROVENANCE, as_strings(ROWS))


@pytest.mark.parametrize("fmt", ["jsonl", "json"])
def test_json_formats_read_back_typed(tmp_path, fmt):
    path = tmp_path / f"out.{fmt}"
    write_rows(path, fmt)
    assert read_table(path) == (PROVENANCE, ROWS)
    assert list(iter_table_rows(path)) == ROWS
    assert not partial_path(path).exists()


def test_jsonl_holds_rows_only_and_its_provenance_is_a_sidecar(tmp_path):
    path = tmp_path / "out.jsonl"
    write_rows(path, "jsonl")
    lines = path.read_text().splitlines()
    assert [json.loads(line) for line in lines] == ROWS
    assert json.loads(provenance_sidecar(path).read_text()) == {"provenance": PROVENANCE}
    assert not list(tmp_path.glob("*.tmp"))


def test_jsonl_without_its_sidecar_reads_back_without_provenance(tmp_path):
    path = tmp_path / "out.jsonl"
    write_rows(path, "jsonl")
    provenance_sidecar(path).unlink()
    assert read_table(path) == ({}, ROWS)


@pytest.mark.parametrize("fmt", ["tsv", "jsonl", "json"])
def test_a_gz_name_is_published_gzip_compressed_and_reproducibly(tmp_path, fmt):
    plain, packed = tmp_path / f"out.{fmt}", tmp_path / f"out.{fmt}.gz"
    write_rows(plain, fmt)
    write_rows(packed, fmt)
    assert packed.read_bytes()[:2] == b"\x1f\x8b"
    assert gzip.decompress(packed.read_bytes()) == plain.read_bytes()
    assert read_table(packed) == read_table(plain)
    first = packed.read_bytes()
    write_rows(packed, fmt, force=True)
    assert packed.read_bytes() == first
    assert not partial_path(packed).exists() and not list(tmp_path.glob("*.tmp"))


def test_a_gz_output_resumes_from_its_uncompressed_partial(tmp_path):
    path = tmp_path / "out.tsv.gz"
    interrupted_run(path, "tsv", ROWS, cut_bytes=5)
    assert partial_path(path).read_text().startswith("# seqchat")
    with open_writer(path, "tsv", ANNOTATION_COLUMNS, PROVENANCE, resume=True) as writer:
        assert writer.completed_ids == {"s1"}
        writer.write(ROWS[1])
    assert read_table(path) == (PROVENANCE, as_strings(ROWS))


def test_json_is_one_document(tmp_path):
    path = tmp_path / "out.json"
    write_rows(path, "json")
    assert json.loads(path.read_text()) == {"provenance": PROVENANCE, "results": ROWS}


def test_json_without_rows(tmp_path):
    path = tmp_path / "out.json"
    write_rows(path, "json", rows=[])
    assert json.loads(path.read_text()) == {"provenance": PROVENANCE, "results": []}


def test_only_given_columns_in_order(tmp_path):
    path = tmp_path / "out.jsonl"
    with open_writer(path, "jsonl", ("length", "id"), {}) as writer:
        writer.write({"id": "x", "length": 2, "extra": "dropped"})
    line = path.read_text().splitlines()[0]
    assert line == '{"length": 2, "id": "x"}'


def test_failure_keeps_partial_and_leaves_target_alone(tmp_path):
    path = tmp_path / "out.tsv"
    with pytest.raises(RuntimeError):
        with open_writer(path, "tsv", ANNOTATION_COLUMNS, PROVENANCE) as writer:
            writer.write(ROWS[0])
            raise RuntimeError("model crashed")
    assert not path.exists()
    assert read_table(partial_path(path)) == (PROVENANCE, as_strings(ROWS[:1]))


def test_existing_output_needs_force(tmp_path):
    path = tmp_path / "out.tsv"
    path.write_text("old")
    with pytest.raises(OutputExistsError, match="--force"):
        open_writer(path, "tsv", ANNOTATION_COLUMNS, PROVENANCE)
    write_rows(path, force=True)
    assert read_table(path)[1] == as_strings(ROWS)


def test_leftover_partial_needs_resume_or_force(tmp_path):
    path = tmp_path / "out.tsv"
    partial_path(path).write_text("old")
    with pytest.raises(OutputExistsError, match="--resume"):
        open_writer(path, "tsv", ANNOTATION_COLUMNS, PROVENANCE)


def interrupted_run(path, fmt, rows, cut_bytes):
    """Simulate a crash that left a partial file whose last row is cut short."""
    with pytest.raises(KeyboardInterrupt):
        with open_writer(path, fmt, ANNOTATION_COLUMNS, PROVENANCE) as writer:
            for row in rows:
                writer.write(row)
            raise KeyboardInterrupt
    partial = partial_path(path)
    partial.write_bytes(partial.read_bytes()[:-cut_bytes])


@pytest.mark.parametrize("fmt", ["tsv", "jsonl", "json"])
def test_resume_after_truncated_row(tmp_path, fmt):
    path = tmp_path / f"out.{fmt}"
    interrupted_run(path, fmt, ROWS, cut_bytes=5)
    options = {"resume": True, "resume_keys": ["prompt"]}
    with open_writer(path, fmt, ANNOTATION_COLUMNS, PROVENANCE, **options) as writer:
        assert writer.completed_ids == frozenset({"s1"})
        writer.write(ROWS[1])
    rows = read_table(path)[1]
    assert rows == (as_strings(ROWS) if fmt == "tsv" else ROWS)
    assert not partial_path(path).exists()


def test_resume_without_partial_starts_fresh(tmp_path):
    path = tmp_path / "out.tsv"
    writer = write_rows(path, resume=True)
    assert writer.completed_ids == frozenset()
    assert read_table(path) == (PROVENANCE, as_strings(ROWS))


def test_resume_of_complete_output_is_refused(tmp_path):
    path = tmp_path / "out.tsv"
    write_rows(path)
    with pytest.raises(OutputExistsError, match="already complete"):
        open_writer(path, "tsv", ANNOTATION_COLUMNS, PROVENANCE, resume=True)


def test_resume_mismatch_names_the_key(tmp_path):
    path = tmp_path / "out.tsv"
    interrupted_run(path, "tsv", ROWS[:1], cut_bytes=1)
    changed = {**PROVENANCE, "bundle_sha256": "def456"}
    with pytest.raises(ResumeMismatchError, match="'bundle_sha256' differs.*'abc123'.*'def456'"):
        open_writer(
            path, "tsv", ANNOTATION_COLUMNS, changed, resume=True, resume_keys=["bundle_sha256"]
        )


def test_resume_with_other_format_is_refused(tmp_path):
    path = tmp_path / "out"
    interrupted_run(path, "tsv", ROWS, cut_bytes=1)
    with pytest.raises(ResumeMismatchError, match="tsv"):
        open_writer(path, "jsonl", ANNOTATION_COLUMNS, PROVENANCE, resume=True)


@pytest.mark.parametrize("fmt", ["tsv", "jsonl"])
def test_stdout(capsys, fmt):
    write_rows("-", fmt)
    out = capsys.readouterr().out
    if fmt == "tsv":
        assert out.splitlines()[0] == "# seqchat: 0.1.0"
        assert len(out.splitlines()) == 6
    else:
        assert [json.loads(line) for line in out.splitlines()] == ROWS


def test_stdout_json_document(capsys):
    write_rows("-", "json")
    assert json.loads(capsys.readouterr().out) == {"provenance": PROVENANCE, "results": ROWS}


def test_stdout_cannot_resume():
    with pytest.raises(OutputUsageError, match="stdout"):
        open_writer("-", "tsv", ANNOTATION_COLUMNS, PROVENANCE, resume=True)
    assert issubclass(OutputUsageError, ValueError)


def test_unknown_format(tmp_path):
    with pytest.raises(OutputUsageError, match="unknown output format 'csv'"):
        open_writer(tmp_path / "out.csv", "csv", ANNOTATION_COLUMNS, PROVENANCE)


def test_errors_are_seqchat_errors(tmp_path):
    path = tmp_path / "out.tsv"
    path.write_text("old")
    with pytest.raises(SeqchatError):
        open_writer(path, "tsv", ANNOTATION_COLUMNS, PROVENANCE)


def test_malformed_tsv_is_reported_with_line(tmp_path):
    path = tmp_path / "bad.tsv"
    path.write_text("# k: v\nid\tlength\ns1\t4\textra\n")
    with pytest.raises(OutputFormatError, match=r"bad.tsv: line 3 has 3 fields, expected 2"):
        read_table(path)
