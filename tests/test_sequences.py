import gzip
import io
import re
from pathlib import Path

import pytest

from seqchat.errors import SeqchatError
from seqchat.io.sequences import SequenceInputError, SequenceRecord, canonical_sequence, read_records


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def ids(records) -> list[str]:
    return [record.id for record in records]


def test_parses_ids_descriptions_and_sequences(tmp_path):
    path = write(tmp_path / "a.fa", ">s1 first one\nACGT\n>s2\nGGCC\n")
    records = list(read_records([path]))
    assert records == [
        SequenceRecord("s1", "first one", "ACGT", path, 0),
        SequenceRecord("s2", "", "GGCC", path, 1),
    ]
    assert records[0].length == 4


def test_multiline_lowercase_rna_is_canonical_dna(tmp_path):
    path = write(tmp_path / "a.fa", ">r\nacgu\nAC GU\n\nnn\n")
    [record] = read_records([path])
    assert record.sequence == "ACGTACGTNN"


def test_several_files_keep_order_and_global_index(tmp_path):
    a = write(tmp_path / "a.fa", ">a1\nA\n>a2\nC\n")
    b = write(tmp_path / "b.fa", ">b1\nG\n")
    records = list(read_records([a, b]))
    assert [(r.id, r.source, r.index) for r in records] == [
        ("a1", a, 0),
        ("a2", a, 1),
        ("b1", b, 2),
    ]


def test_gzip_detected_by_content_not_name(tmp_path):
    gz_named_fa = tmp_path / "x.fa"
    gz_named_fa.write_bytes(gzip.compress(b">z\nACGT\n"))
    plain_named_gz = write(tmp_path / "y.fa.gz", ">p\nTTTT\n")
    assert [r.sequence for r in read_records([gz_named_fa, plain_named_gz])] == ["ACGT", "TTTT"]


@pytest.mark.parametrize("data", [b">s\nACGU\n", gzip.compress(b">s\nACGU\n")])
def test_stdin_plain_and_gzip(data):
    stdin = io.BytesIO(data)
    [record] = read_records(["-"], stdin=stdin)
    assert (record.id, record.sequence, record.source) == ("s", "ACGT", "-")
    assert not stdin.closed


def test_reads_many_records_lazily(tmp_path):
    path = tmp_path / "big.fa"
    path.write_text("".join(f">s{i}\nACGT\n" for i in range(1000)))
    records = read_records([path])
    assert next(records).id == "s0"
    assert sum(1 for _ in records) == 999


def test_crlf_and_byte_order_mark(tmp_path):
    path = tmp_path / "win.fa"
    path.write_bytes(b"\xef\xbb\xbf>w desc\r\nAC\r\nGT\r\n")
    [record] = read_records([path])
    assert (record.id, record.description, record.sequence) == ("w", "desc", "ACGT")


def error_message(paths, stdin=None) -> str:
    with pytest.raises(SequenceInputError) as caught:
        list(read_records(paths, stdin=stdin))
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_protein_letter_names_file_record_letter_and_position(tmp_path):
    path = write(tmp_path / "proteins.fa", ">sp|P1|X some protein\nMKEV\n")
    assert error_message([path]) == (
        f"{path}: record 'sp|P1|X': 'E' at position 3 is not a nucleotide letter"
        " (is this a protein FASTA?)"
    )


@pytest.mark.parametrize("char", ["-", ".", "*", "X", "1"])
def test_non_nucleotide_characters_are_errors(tmp_path, char):
    path = write(tmp_path / "a.fa", f">r\nAC\nG{char}T\n")
    message = error_message([path])
    expected = f"{path}: record 'r': '{char}' at position 4 is not a nucleotide letter"
    assert message.startswith(expected)
    assert "protein" not in message


def test_empty_record(tmp_path):
    path = write(tmp_path / "a.fa", ">x\n>y\nACGT\n")
    assert error_message([path]) == f"{path}: record 'x' has no sequence"


def test_duplicate_id_across_files(tmp_path):
    a = write(tmp_path / "a.fa", ">x\nA\n")
    b = write(tmp_path / "b.fa", ">y\nC\n>x other\nG\n")
    assert error_message([a, b]) == f"{b}: duplicate id 'x' (first seen in {a})"


def test_file_without_records(tmp_path):
    path = write(tmp_path / "a.fa", "\n\n")
    assert error_message([path]) == f"{path}: no FASTA records found"


def test_text_before_first_header(tmp_path):
    path = write(tmp_path / "notes.txt", "\nhello\n>x\nACGT\n")
    assert error_message([path]) == f"{path}: not a FASTA file: expected '>' at line 2"


@pytest.mark.parametrize("content", [b"\x89PNG\r\n\x1a\n\xff\xfe", b">x\nAC\x00GT\n"])
def test_binary_content(tmp_path, content):
    path = tmp_path / "x.bin"
    path.write_bytes(content)
    assert error_message([path]) == f"{path}: not a FASTA file (binary content)"


def test_missing_file(tmp_path):
    path = tmp_path / "missing.fa"
    assert error_message([path]) == f"{path}: no such file"


def test_corrupt_gzip(tmp_path):
    path = tmp_path / "x.fa.gz"
    path.write_bytes(gzip.compress(b">x\n" + b"ACGT" * 100)[:-10])
    assert error_message([path]).startswith(f"{path}: corrupt gzip data (")


def test_stdin_errors_name_stdin():
    assert error_message(["-"], stdin=io.BytesIO(b"")) == "<stdin>: no FASTA records found"


def test_canonical_sequence_normalises():
    assert canonical_sequence(" acgu\nRYN \t") == "ACGTRYN"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("ACQT", "'Q' at position 3 is not a nucleotide letter (is this a protein FASTA?)"),
        ("AC GT-", "'-' at position 5 is not a nucleotide letter (alignment gaps are not allowed)"),
        (" \n", "the sequence is empty"),
    ],
)
def test_canonical_sequence_errors_without_file_context(raw, message):
    with pytest.raises(SequenceInputError, match=f"^{re.escape(message)}$"):
        canonical_sequence(raw)


def test_input_errors_are_seqchat_errors():
    assert issubclass(SequenceInputError, SeqchatError)
    assert issubclass(SequenceInputError, ValueError)
