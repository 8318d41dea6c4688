"""Homology search on a tiny synthetic reference set: random sequences from a seeded RNG,
a quarter of them genes made of random codons."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from seqchat.errors import SeqchatError
from seqchat.homology.build import build_reference
from seqchat.homology.errors import ReferenceLoadError
from seqchat.homology.orf import find_orf, reverse_complement_dna
from seqchat.homology.reference import load_reference
from seqchat.homology.search import Hit, search
from seqchat.homology.transfer import transfer_description

SEED = 7
REFERENCES = 200
CODING = 50
STOPS = {"TAA", "TAG", "TGA"}
CODE = {
    a + b + c: aa
    for (a, b, c), aa in zip(
        ((a, b, c) for a in "TCAG" for b in "TCAG" for c in "TCAG"),
        "FFLLSSSSYY**CC*WLLLLPPPPHHQQRRRRIIIMTTTTNNKKSSRRVVVVAAAADDEEGGGG",
    )
}
SENSE = sorted(codon for codon in CODE if codon not in STOPS)
SYNONYMS = {c: [o for o in SENSE if CODE[o] == CODE[c] and o != c] for c in SENSE}


def random_noncoding(rng: random.Random) -> str:
    while True:
        sequence = "".join(rng.choices("ACGT", k=rng.randint(300, 1500)))
        if find_orf(sequence) is None:
            return sequence


def random_gene(rng: random.Random) -> str:
    codons = rng.randint(110, 450)
    return "ATG" + "".join(rng.choices(SENSE, k=codons)) + rng.choice(sorted(STOPS))


def mutated(rng: random.Random, sequence: str, identity: float) -> str:
    """Substitute exactly round((1 - identity) * length) positions."""
    letters = list(sequence)
    for position in rng.sample(range(len(letters)), round((1 - identity) * len(letters))):
        letters[position] = rng.choice([b for b in "ACGT" if b != letters[position]])
    return "".join(letters)


def shuffled(rng: random.Random, sequence: str) -> str:
    letters = list(sequence)
    rng.shuffle(letters)
    return "".join(letters)


def identity(a: str, b: str) -> float:
    return sum(x == y for x, y in zip(a, b)) / len(a)


def write_fasta(path: Path, records: list[tuple[str, str]]) -> Path:
    path.write_text("".join(f">{rid}\n{seq}\n" for rid, seq in records))
    return path


def write_tsv(path: Path, rows: list[dict[str, str]]) -> Path:
    header = ["id", "description", "product", "family", "go"]
    lines = ["\t".join(header)] + ["\t".join(row.get(h, "") for h in header) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def dataset() -> dict[str, str]:
    rng = random.Random(SEED)
    sequences = {}
    for i in range(REFERENCES):
        coding = i < CODING
        sequences[f"{'gene' if coding else 'rna'}{i:03d}"] = (
            random_gene(rng) if coding else random_noncoding(rng)
        )
    return sequences


def annotation_rows(dataset: dict[str, str]) -> list[dict[str, str]]:
    return [
        {"id": rid, "description": f"what {rid} does", "product": f"{rid} product",
         "family": "F1" if rid.startswith("gene") else "", "go": "binding; transport"}
        for rid in dataset
    ]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory, dataset: dict[str, str]) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("inputs")
    fasta = write_fasta(folder / "refs.fa", list(dataset.items()))
    return fasta, write_tsv(folder / "refs.tsv", annotation_rows(dataset))


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, inputs: tuple[Path, Path]):
    out = tmp_path_factory.mktemp("built") / "synthetic"
    build_reference([inputs[0]], [inputs[1]], out)
    return load_reference(out)


def hits_for(reference, sequence: str, **options) -> list[Hit]:
    [(query_id, hits)] = list(search([("q", sequence)], [reference], **options))
    assert query_id == "q"
    return hits


# --- search ------------------------------------------------------------------------------


@pytest.mark.parametrize("rid", ["gene003", "gene041", "rna100", "rna177"])
def test_own_sequence_is_the_top_hit_at_full_identity(reference, dataset, rid):
    top = hits_for(reference, dataset[rid])[0]
    assert top.reference_id == rid
    assert top.identity == 100.0
    assert top.query_coverage == pytest.approx(1.0, abs=0.02)
    assert top.target_coverage == pytest.approx(1.0, abs=0.02)
    assert top.evalue < 1e-30
    assert top.path == ("protein" if rid.startswith("gene") else "nucleotide")
    assert top.strand == "+"
    assert (top.description, top.product, top.go) == (
        f"what {rid} does", f"{rid} product", ("binding", "transport")
    )
    assert top.reference_set == "synthetic"
    assert top.reference_sha256 == reference.content_sha256


@pytest.mark.parametrize("wanted", [0.85, 0.90])
def test_mutated_copy_is_found_in_nucleotides(reference, dataset, wanted):
    rng = random.Random(1)
    for rid in ("rna060", "rna123", "rna199"):
        query = mutated(rng, dataset[rid], wanted)
        top = hits_for(reference, query)[0]
        assert (top.reference_id, top.path) == (rid, "nucleotide")
        assert top.evalue <= 1e-3
        assert wanted * 100 - 6 <= top.identity <= wanted * 100 + 6


def test_reverse_complement_is_found_on_the_minus_strand(reference, dataset):
    rng = random.Random(2)
    for rid in ("rna070", "gene010"):
        query = reverse_complement_dna(mutated(rng, dataset[rid], 0.9))
        top = hits_for(reference, query)[0]
        assert (top.reference_id, top.strand) == (rid, "-")


def test_rna_alphabet_query_is_found(reference, dataset):
    query = dataset["rna150"].replace("T", "u")
    top = hits_for(reference, query)[0]
    assert (top.reference_id, top.identity) == ("rna150", 100.0)


def test_synonymous_gene_is_found_on_the_protein_path(reference, dataset):
    rng = random.Random(3)
    gene = dataset["gene020"]
    codons = [gene[i : i + 3] for i in range(0, len(gene), 3)]
    recoded = codons[:1] + [rng.choice(SYNONYMS[c]) if SYNONYMS.get(c) else c
                            for c in codons[1:-1]] + codons[-1:]
    query = "".join(recoded)
    assert identity(query, gene) < 0.8
    top = hits_for(reference, query)[0]
    assert (top.reference_id, top.path, top.identity) == ("gene020", "protein", 100.0)
    assert top.evalue < 1e-30


def test_shuffled_sequences_have_no_significant_hit(reference, dataset):
    rng = random.Random(4)
    queries = [(rid, shuffled(rng, dataset[rid])) for rid in list(dataset)[::10]]
    results = list(search(queries, [reference], evalue=1e-3))
    assert [query_id for query_id, _ in results] == [rid for rid, _ in queries]
    assert all(hits == [] for _, hits in results)


def test_runs_of_n_do_not_break_search(reference, dataset):
    sequence = dataset["rna080"]
    query = "N" * 30 + sequence[:200] + "N" * 50 + sequence[200:] + "NNNRYKM"
    top = hits_for(reference, query)[0]
    assert top.reference_id == "rna080"
    assert hits_for(reference, "N" * 500) == []


def test_threads_do_not_change_results(reference, dataset):
    rng = random.Random(5)
    queries = [(rid, mutated(rng, seq, 0.88)) for rid, seq in list(dataset.items())[::7]]
    one = list(search(queries, [reference], threads=1))
    two = list(search(queries, [reference], threads=2))
    assert one == two
    assert sum(bool(hits) for _, hits in one) == len(queries)


def test_several_reference_sets_are_merged_by_score(reference, dataset, tmp_path):
    rng = random.Random(6)
    rna = dataset["rna130"]
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"id": "mine", "sequence": mutated(rng, rna, 0.9),
                                 "text": "my own RNA"}) + "\n")
    own = load_reference(build_reference([other], [], tmp_path / "own").path)
    [(query_id, merged)] = list(search([rna], [own, reference]))
    assert query_id == "sequence_1"
    assert [h.reference_id for h in merged] == ["rna130", "mine"]
    assert merged[1].reference_set == "own" and merged[1].description == "my own RNA"
    assert merged[0].bit_score > merged[1].bit_score
    # E-values count the nucleotides of both sets
    short = rna[:100]
    alone = hits_for(reference, short)[0]
    [(_, merged_short)] = list(search([short], [own, reference]))
    both = next(h for h in merged_short if h.reference_set == "synthetic")
    assert (both.reference_id, both.bit_score) == (alone.reference_id, alone.bit_score)
    sizes = [r.counts["nucleotides"] for r in (reference, own)]
    assert 0 < alone.evalue < 1e-10
    assert both.evalue / alone.evalue == pytest.approx(sum(sizes) / sizes[0], rel=1e-3)


def test_transfer_description_uses_a_significant_best_hit(reference, dataset):
    assert transfer_description(hits_for(reference, dataset["rna090"])) == "what rna090 does"
    assert transfer_description([]) is None
    weak = hits_for(reference, dataset["rna091"])[0]
    assert transfer_description([weak], evalue=weak.evalue / 10) is None


# --- build, load, reproducibility -----------------------------------------------------------


def test_reference_round_trips_and_is_reproducible(reference, dataset, tmp_path):
    info = reference.info()
    assert (info.references, info.coding) == (REFERENCES, CODING)
    assert info.nucleotides == sum(map(len, dataset.values()))
    assert [s.role for s in info.sources] == ["sequences", "annotations"]
    # the same content, split differently, in another order, under other names
    items = list(dataset.items())
    a = write_fasta(tmp_path / "b_part.fa", items[120:][::-1])
    b = write_fasta(tmp_path / "a_part.fa.txt", items[:120])
    rows = annotation_rows(dataset)[::-1]
    annotations = tmp_path / "ann.jsonl"
    annotations.write_text("".join(json.dumps(row) + "\n" for row in rows))
    again = load_reference(build_reference([a, b], [annotations], tmp_path / "again").path)
    assert again.content_sha256 == reference.content_sha256
    query = mutated(random.Random(8), dataset["rna111"], 0.9)
    first, second = hits_for(reference, query), hits_for(again, query)
    assert [(h.reference_id, h.bit_score, h.evalue) for h in first] == [
        (h.reference_id, h.bit_score, h.evalue) for h in second
    ]
    # one changed description changes the hash
    rows[0] = {**rows[0], "description": "something else"}
    annotations.write_text("".join(json.dumps(row) + "\n" for row in rows))
    changed = build_reference([a, b], [annotations], tmp_path / "changed")
    assert changed.content_sha256 != reference.content_sha256


def test_inline_jsonl_annotations(tmp_path):
    path = tmp_path / "refs.jsonl"
    rng = random.Random(9)
    records = [
        {"id": "r1", "sequence": random_noncoding(rng).replace("T", "U"), "text": "an RNA",
         "rfam_acc": "RF00001", "label": "5S_rRNA"},
        {"id": "g1", "sequence": random_gene(rng), "description": "a gene",
         "product": "kinase", "go_function": "ATP binding", "go_process": "signalling"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    reference = load_reference(build_reference([path], [], tmp_path / "ref").path)
    r1, g1 = sorted(reference.entries([0, 1]), key=lambda e: e.id != "r1")
    assert (r1.description, r1.family, r1.protein) == ("an RNA", "RF00001", None)
    assert "U" not in r1.sequence
    assert (g1.product, g1.go, g1.orf_strand) == ("kinase", ("ATP binding", "signalling"), "+")
    assert g1.protein == "".join(CODE[records[1]["sequence"][i : i + 3]]
                                 for i in range(0, len(records[1]["sequence"]) - 3, 3))


def build_error(tmp_path: Path, sequences: list[Path], annotations: list[Path] = ()) -> str:
    out = tmp_path / "out"
    with pytest.raises(SeqchatError) as caught:
        build_reference(sequences, list(annotations), out)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_duplicate_ids_are_an_error(tmp_path):
    a = write_fasta(tmp_path / "a.fa", [("x1", "ACGT" * 30), ("x2", "GGCA" * 30)])
    b = write_fasta(tmp_path / "b.fa", [("x2", "TTGA" * 30)])
    message = build_error(tmp_path, [a, b])
    assert "b.fa" in message and "duplicate id 'x2'" in message and "a.fa" in message


def test_missing_description_is_an_error(tmp_path):
    fasta = write_fasta(tmp_path / "a.fa", [("x1", "ACGT" * 30), ("x2", "GGCA" * 30)])
    tsv = write_tsv(tmp_path / "a.tsv", [{"id": "x1", "description": "one"}])
    message = build_error(tmp_path, [fasta], [tsv])
    assert "a.fa" in message and "'x2'" in message and "no description" in message


def test_protein_fasta_is_an_error(tmp_path):
    fasta = write_fasta(tmp_path / "p.fa", [("p1", "MKVLAAGIVLLLSACSSEQAPEVTK")])
    message = build_error(tmp_path, [fasta])
    assert "p.fa" in message and "'p1'" in message and "protein" in message
    mostly_iupac = write_fasta(tmp_path / "q.fa", [("p2", "MKVAAHDKRSWYMKKVAAHDRY")])
    assert "protein" in build_error(tmp_path, [mostly_iupac])


@pytest.mark.parametrize(
    "text, expected",
    [('{"id": "a", "sequence": "ACGT"\n', "line 1: not valid JSON"),
     ('{"sequence": "ACGT", "text": "x"}\n', "line 1: no 'id'"),
     ("", "no FASTA records")],
)
def test_malformed_sequence_files_are_errors(tmp_path, text, expected):
    path = tmp_path / "bad.jsonl"
    path.write_text(text)
    message = build_error(tmp_path, [path])
    assert "bad.jsonl" in message and expected in message


def test_malformed_tsv_is_an_error(tmp_path):
    fasta = write_fasta(tmp_path / "a.fa", [("x1", "ACGT" * 30)])
    tsv = tmp_path / "a.tsv"
    tsv.write_text("id\tdescription\nx1\tone\textra\n")
    assert "a.tsv: line 2: 3 fields, the header has 2" in build_error(tmp_path, [fasta], [tsv])


def test_existing_output_needs_force(tmp_path, inputs):
    out = tmp_path / "ref"
    out.mkdir()
    (out / "keep").write_text("x")
    with pytest.raises(SeqchatError, match="already exists"):
        build_reference([inputs[0]], [inputs[1]], out)
    assert (out / "keep").exists()
    info = build_reference([inputs[0]], [inputs[1]], out, force=True)
    assert info.references == REFERENCES and not (out / "keep").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ref"]


def test_load_errors_are_one_line(tmp_path, reference):
    with pytest.raises(ReferenceLoadError, match="no such reference directory"):
        load_reference(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReferenceLoadError, match="no manifest.json"):
        load_reference(tmp_path / "empty")
    broken = tmp_path / "broken"
    broken.mkdir()
    manifest = json.loads((reference.path / "manifest.json").read_text())
    (broken / "manifest.json").write_text(json.dumps({**manifest, "format_version": 99}))
    with pytest.raises(ReferenceLoadError, match="format version 99"):
        load_reference(broken)
    (broken / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ReferenceLoadError, match="corrupt reference set"):
        load_reference(broken)
