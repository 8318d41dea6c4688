"""Hypothesis fuzz of the FASTA reader: any bytes, plain or compressed, either give valid
records or one SequenceInputError line naming the file; never another exception. Bounded
and derandomized, so the suite stays reproducible. (The flag fuzz is in test_flags.py,
the bundle-config fuzz in test_bundle_validation.py.)"""

from __future__ import annotations

import bz2
import gzip
import lzma
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from seqchat.io.sequences import SequenceInputError, read_records

IUPAC = "ACGTUNRYKMSWBDHVacgtun"
fasta_like = st.lists(
    st.one_of(
        st.builds(lambda name: f">{name}\n", st.text(max_size=8)),
        st.builds(lambda seq: f"{seq}\n", st.text(alphabet=IUPAC + " -*.\t", max_size=40)),
        st.text(max_size=20),
    ),
    max_size=12,
).map("".join)
contents = st.one_of(
    fasta_like.map(lambda text: text.encode("utf-8", "surrogatepass")),
    st.binary(max_size=200),
)
COMPRESSORS = {"plain": lambda b: b, "gzip": gzip.compress, "bz2": bz2.compress, "xz": lzma.compress}


@settings(max_examples=300, deadline=None, derandomize=True)
@given(content=contents, compression=st.sampled_from(sorted(COMPRESSORS)), cut=st.integers(0, 8))
def test_any_input_gives_valid_records_or_one_named_error(content: bytes, compression: str, cut: int) -> None:
    data = COMPRESSORS[compression](content)
    if cut and compression != "plain":
        data = data[:-cut]  # a truncated stream
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "fuzz.fa"
        path.write_bytes(data)
        try:
            records = list(read_records([str(path)]))
        except SequenceInputError as error:
            message = str(error)
            assert "\n" not in message and message.startswith(str(path)), message
            return
    assert records
    for record in records:
        assert record.id and record.sequence
        assert set(record.sequence) <= set("ACGUNRYKMSWBDHV"), record.sequence
    assert len({record.id for record in records}) == len(records)
