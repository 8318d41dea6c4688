"""`seqchat annotate --cache DIR`: answers for sequences seen before are reused, and a run
with a cache writes exactly what a run without one writes."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import (
    assert_clean_failure,
    invoke,
    make_records,
    without_command_line,
    write_fasta,
)

from seqchat.annotate import Annotator
from seqchat.io.cache import ResultCache
from seqchat.llm.runtime import DecodingSettings
from seqchat.io.sequences import SequenceRecord


def annotate(bundle: Path, fasta: Path, out: Path, *extra: str):
    result = invoke(["annotate", str(fasta), "-m", str(bundle), "-o", str(out), "-t", "1", "--parallel", "3", *extra])
    assert result.exit_code == 0, (result.stderr, result.exception)
    return result


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A first file, and a second that repeats three of its sequences under new ids, repeats
    one of its own, and adds four new ones."""
    directory = tmp_path_factory.mktemp("cache_inputs")
    first = make_records(6, seed=11)
    new = make_records(4, seed=12)
    second = [
        ("again0", first[0][1]), ("n0", new[0][1]), ("again3", first[3][1]), ("n1", new[1][1]),
        ("n1-twin", new[1][1]), ("n2", new[2][1]), ("again5", first[5][1]), ("n3", new[3][1]),
    ]
    return write_fasta(directory / "first.fa", first), write_fasta(directory / "second.fa", second)


def test_cached_answers_are_reused_and_equal_a_run_without_cache(
    tiny_bundle: Path, inputs: tuple[Path, Path], tmp_path: Path, one_torch_thread
) -> None:
    first, second = inputs
    cache = tmp_path / "cache"
    warm = annotate(tiny_bundle, first, tmp_path / "first.tsv", "--cache", str(cache))
    assert warm.stderr.strip() == f"seqchat: cache {cache}: 0 answers found, 6 generated"
    cached = annotate(tiny_bundle, second, tmp_path / "cached.tsv", "--cache", str(cache))
    # n1-twin repeats n1 inside the run: neither looked up again nor generated again.
    assert cached.stderr.strip() == f"seqchat: cache {cache}: 3 answers found, 4 generated"
    annotate(tiny_bundle, second, tmp_path / "fresh.tsv", "-q")
    assert without_command_line((tmp_path / "cached.tsv").read_text()) == without_command_line(
        (tmp_path / "fresh.tsv").read_text()
    )
    again = annotate(tiny_bundle, second, tmp_path / "again.tsv", "--cache", str(cache))
    assert again.stderr.strip() == f"seqchat: cache {cache}: 7 answers found, 0 generated"


def test_other_decoding_settings_do_not_share_answers(
    tiny_bundle: Path, inputs: tuple[Path, Path], tmp_path: Path, one_torch_thread
) -> None:
    first, _ = inputs
    cache = tmp_path / "cache"
    annotate(tiny_bundle, first, tmp_path / "a.tsv", "--cache", str(cache), "--max-new-tokens", "4")
    other = annotate(tiny_bundle, first, tmp_path / "b.tsv", "--cache", str(cache), "--max-new-tokens", "5")
    assert other.stderr.strip() == f"seqchat: cache {cache}: 0 answers found, 6 generated"


def test_blocks_keep_input_order_across_hits_misses_and_repeats(tiny_bundle: Path, tmp_path: Path, one_torch_thread) -> None:
    sequences = [s for _, s in make_records(5, seed=13)]
    order = [0, 1, 0, 2, 3, 1, 4, 4, 2, 0]
    records = [SequenceRecord(f"r{i}", "", sequences[k], "mem", i) for i, k in enumerate(order)]
    settings = DecodingSettings(max_new_tokens=6)
    # One slot: this tiny F32 model's logprobs move in the 7th digit with the batch's shape.
    with Annotator.load(str(tiny_bundle), threads=1, parallel=1, decoding=settings) as annotator:
        plain = list(annotator.annotate(records))
        annotator.cache_block = 3
        with ResultCache(tmp_path / "c", annotator.cache_context()) as cache:
            assert cache.get(sequences[1]) is None and cache.misses == 1
            blocked = list(annotator.annotate(records, cache))
            # Blocks [0 1 0] [2 3 1] [4 4 2] [0]: found again are 1, 2 and 0; a repeat
            # inside a block is not looked up twice.
            assert (cache.hits, cache.misses) == (3, 1 + 5)
    assert blocked == plain


def test_a_file_that_is_not_a_cache_is_a_clean_error(tiny_bundle: Path, inputs: tuple[Path, Path], tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "seqchat-cache.sqlite").write_text("not a database\n" * 100)
    result = invoke(["annotate", str(inputs[0]), "-m", str(tiny_bundle), "-o", str(tmp_path / "o.tsv"), "-t", "1", "--cache", str(cache)])
    assert_clean_failure(result.exit_code, result.stderr, "cache", str(cache))
