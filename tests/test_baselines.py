"""Tests of seqchat.evaluate.baselines (k-mer nearest neighbour, most common description)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import NEEDS_EVAL

from seqchat.evaluate.baselines import (
    DEFAULT_K,
    KmerNearestNeighbour,
    MostCommonDescription,
    Prediction,
    kmer_profile,
    most_common_description,
)

pytestmark = NEEDS_EVAL

BASES = np.array(list("ACGT"))


def random_seq(rng: np.random.Generator, n: int) -> str:
    return "".join(BASES[rng.integers(0, 4, n)])


def mutate(rng: np.random.Generator, seq: str, n_mutations: int) -> str:
    chars = list(seq)
    for pos in rng.choice(len(chars), n_mutations, replace=False):
        chars[pos] = "ACGT"[("ACGT".index(chars[pos]) + int(rng.integers(1, 4))) % 4]
    return "".join(chars)


@pytest.fixture(scope="module")
def refs():
    rng = np.random.default_rng(0)
    return [
        (f"ref{i}", random_seq(rng, int(rng.integers(300, 1500))), f"description {i}")
        for i in range(200)
    ]


def test_kmer_profile_counts_and_alphabet():
    # ACGTA, k=2: AC=0*4+1, CG=1*4+2, GT=2*4+3, TA=3*4+0
    cols, counts = kmer_profile("ACGTA", 2)
    assert cols.tolist() == [1, 6, 11, 12]
    assert counts.tolist() == [1, 1, 1, 1]
    # U reads as T, case is ignored
    for variant in ("acgua", "ACGUA"):
        c2, n2 = kmer_profile(variant, 2)
        assert c2.tolist() == cols.tolist() and n2.tolist() == counts.tolist()
    # a non-ACGTU letter breaks the k-mers that overlap it
    cols, counts = kmer_profile("ACNGT", 2)
    assert cols.tolist() == [1, 11]
    # shorter than k, or no valid letter
    assert kmer_profile("AC", 3)[0].size == 0
    assert kmer_profile("NNNNNN", 3)[0].size == 0


def test_kmer_profile_both_strands_is_reverse_complement_invariant():
    cols, counts = kmer_profile("ACGTA", 2, both_strands=True)
    # AC~GT -> 1 (twice), CG is its own reverse complement, TA too
    assert dict(zip(cols.tolist(), counts.tolist())) == {1: 2, 6: 1, 12: 1}
    rng = np.random.default_rng(1)
    seq = random_seq(rng, 500)
    rc = seq[::-1].translate(str.maketrans("ACGT", "TGCA"))
    a, b = kmer_profile(seq, 5, both_strands=True), kmer_profile(rc, 5, both_strands=True)
    assert a[0].tolist() == b[0].tolist() and a[1].tolist() == b[1].tolist()


def test_kmer_profile_rejects_bad_k():
    with pytest.raises(ValueError):
        kmer_profile("ACGT", 0)
    with pytest.raises(ValueError):
        KmerNearestNeighbour(k=40)


def test_nearest_neighbour_finds_mutated_substring_of_reference(refs):
    rng = np.random.default_rng(2)
    nn = KmerNearestNeighbour().fit(refs)
    assert nn.k == DEFAULT_K and len(nn) == len(refs)
    picks = [5, 17, 123, 199]
    queries = []
    for i in picks:
        seq = refs[i][1]
        start = len(seq) // 5
        piece = seq[start : start + len(seq) // 2]  # a substring of the reference ...
        queries.append(mutate(rng, piece, len(piece) // 50))  # ... with 2% point mutations
    preds = nn.predict(queries)
    assert [p.ref_id for p in preds] == [refs[i][0] for i in picks]
    assert [p.description for p in preds] == [refs[i][2] for i in picks]
    assert all(isinstance(p, Prediction) and 0.2 < p.similarity <= 1.0 for p in preds)


def test_nearest_neighbour_rna_spelling_and_exact_match(refs):
    nn = KmerNearestNeighbour(k=5).fit(refs)
    rna = refs[42][1].replace("T", "U").lower()
    (pred,) = nn.predict([rna])
    assert pred.ref_id == "ref42"
    assert pred.similarity == pytest.approx(1.0, abs=1e-5)


def test_dense_and_sparse_paths_agree(refs):
    rng = np.random.default_rng(3)
    queries = [mutate(rng, refs[i][1], 30) for i in range(0, 200, 7)]
    dense = KmerNearestNeighbour(k=5).fit(refs)
    sparse = KmerNearestNeighbour(k=5, dense_limit_bytes=0).fit(refs)
    assert dense._dense is not None and sparse._sparse is not None
    a, b = dense.predict(queries), sparse.predict(queries)
    assert [p.ref_id for p in a] == [p.ref_id for p in b] == [f"ref{i}" for i in range(0, 200, 7)]
    assert np.allclose([p.similarity for p in a], [p.similarity for p in b], atol=1e-5)


def test_streaming_in_batches_matches_one_batch(refs):
    rng = np.random.default_rng(4)
    queries = [random_seq(rng, 400) for _ in range(23)]
    one = KmerNearestNeighbour(batch_size=1000).fit(refs).predict(queries)
    it = KmerNearestNeighbour(batch_size=4).fit(refs).iter_predict(iter(queries))
    assert next(it) == one[0]
    assert [one[0], *it] == one


def test_exclude_ids_leave_one_out():
    refs = [
        ("a", "ACGTACGTACGTAAAC", "alpha"),
        ("a2", "ACGTACGTACGTAAAG", "alpha copy"),
        ("b", "GGGGCCCCGGGGCCCC", "beta"),
    ]
    nn = KmerNearestNeighbour(k=3).fit(refs)
    assert nn.predict(["ACGTACGTACGTAAAC"])[0].ref_id == "a"
    assert nn.predict(["ACGTACGTACGTAAAC"], exclude_ids=["a"])[0].ref_id == "a2"


def test_query_without_kmers_falls_back_to_most_common():
    refs = [("a", "ACGTACGT", "tRNA"), ("b", "TTTTGGGG", "snoRNA"), ("c", "CCCCAAAA", "tRNA")]
    nn = KmerNearestNeighbour(k=4).fit(refs)
    for query in ("NNNNNNNN", "AC", ""):
        assert nn.predict([query])[0] == Prediction(None, "tRNA", 0.0)


def test_fit_and_predict_errors():
    with pytest.raises(ValueError, match="no references"):
        KmerNearestNeighbour().fit([])
    with pytest.raises(RuntimeError, match="fit"):
        KmerNearestNeighbour().predict(["ACGT"])


def test_scales_to_thousands_of_long_references():
    # 5,000 references x 200 queries, lengths up to 15 kb (timing is asserted loosely)
    import time

    rng = np.random.default_rng(5)
    lengths = rng.integers(100, 15000, 5000)
    lengths[:50] = 15000
    pool = random_seq(rng, 20000)
    refs = [
        (f"r{i}", pool[s : s + n], f"d{i % 97}")
        for i, (s, n) in enumerate(zip(rng.integers(0, 5000, 5000), lengths))
    ]
    refs += [("target", random_seq(rng, 3000), "the target")]
    t0 = time.perf_counter()
    nn = KmerNearestNeighbour().fit(refs)
    queries = [mutate(rng, refs[-1][1][500:2500], 20)] + [random_seq(rng, 1000) for _ in range(199)]
    preds = nn.predict(queries)
    elapsed = time.perf_counter() - t0
    assert preds[0].ref_id == "target"
    assert len(preds) == 200
    assert elapsed < 60, elapsed


def test_most_common_description():
    assert most_common_description(["b", "a", "b", "a", "c"]) == "b"  # tie -> first seen
    assert most_common_description(iter(["x", "y", "y"])) == "y"
    with pytest.raises(ValueError):
        most_common_description([])
    baseline = MostCommonDescription().fit(
        [("1", "ACGT", "tRNA"), ("2", "GGGG", "rRNA"), ("3", "CCCC", "tRNA")]
    )
    assert baseline.predict(["AAAA", "CCCC"]) == [Prediction(None, "tRNA", 0.0)] * 2
