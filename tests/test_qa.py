import gzip
import itertools
import json
from pathlib import Path

import pytest

from seqchat.errors import SeqchatError
from seqchat.train.qa import (
    DEFAULT_QUESTION,
    DESCRIBE_GENE,
    DESCRIBE_RNA,
    GENE_COMPONENT,
    GENE_FUNCTION,
    GENE_PROCESS,
    GENE_PRODUCT,
    RNA_CLASS,
    RNA_FAMILY,
    RNA_FUNCTION,
    TEMPLATES,
    QAInputError,
    describe_question,
    detect_kind,
    parse_rfam_text,
    qa_pairs,
    readable_rna_class,
)
from seqchat.train.qa_files import iter_qa, write_qa_jsonl

SHARED_DATA = Path("/work/shared/data")

YEAST_CDS = {
    "id": "YAL067C",
    "seq_type": "DNA",
    "feature": "CDS",
    "sequence": "ATGtatcgatTAG",
    "text": "Putative permease; member of the allantoate transporter subfamily "
    "of the major facilitator superfamily",
    "product": "putative permease SEO1",
    "go_function": "transmembrane transporter activity; transporter activity",
    "go_process": "anion transport; transmembrane transport; transport",
    "go_component": "cell periphery; integral component of membrane; membrane",
    "chrom": "chr01",
    "gene": "SEO1",
}

YEAST_BARE = {
    "id": "YAL067W-A",
    "feature": "CDS",
    "sequence": "ATGCCATAG",
    "text": "hypothetical protein; identified by gene-trapping",
    "product": "hypothetical protein",
    "go_function": "",
    "go_process": "",
    "go_component": "",
    "chrom": "chr01",
    "gene": "",
}

YEAST_TRNA = {
    "id": "tP(UGG)A",
    "feature": "tRNA",
    "sequence": "GGGCGTGTGGCGTAGTCGGTAGCGC",
    "text": "Proline tRNA (tRNA-Pro), predicted by tRNAscan-SE analysis",
    "product": "tRNA-Pro",
    "go_function": "triplet codon-amino acid adaptor activity",
    "go_process": "translational elongation",
    "go_component": "cytosol",
    "chrom": "chr01",
}

YEAST_SNORNA = {
    "id": "snR161",
    "feature": "ncRNA",
    "sequence": "ACGUACGU",
    "text": "H/ACA small nucleolar RNA (snoRNA); guides pseudouridylation of small subunit rRNA",
    "product": "SNR161",
    "go_function": "",
    "go_process": "rRNA pseudouridine synthesis",
    "go_component": "box H/ACA snoRNP complex; nucleolus",
    "chrom": "chr01",
}

RFAM_5S = {
    "id": "RF00001_X52048_1_2-120",
    "split": "train",
    "sequence": "GCCTACGGCCATACCACCCTGAAAGCACCGGTTCTCGTCCGATCACCGAAG",
    "label": "5S_rRNA",
    "rfam_acc": "RF00001",
    "text": "5S ribosomal RNA. Rfam RNA type: Gene, rRNA. 5S ribosomal RNA (5S rRNA) is a "
    "component of the large ribosomal subunit in both prokaryotes and eukaryotes. In "
    "eukaryotes, it is synthesised by RNA polymerase III [1]. GO: structural constituent "
    "of ribosome; ribosome.",
}

RFAM_MIRNA = {
    "id": "RF00746_AAIY01209324_1_410-527",
    "sequence": "UGGCUAGCUAGCUAGGAUC",
    "label": "miRNA",
    "rfam_acc": "RF00746",
    "text": "microRNA mir-454. Rfam RNA type: Gene, miRNA. GO: micro-ribonucleoprotein "
    "complex; gene silencing by miRNA.",
}

RFAM_NO_GO = {
    "id": "RF00163_X1",
    "sequence": "ACGTACGTAC",
    "label": "ribozyme",
    "rfam_acc": "RF00163",
    "text": "Hammerhead ribozyme (type I). Rfam RNA type: Gene, ribozyme. The hammerhead "
    "ribozyme is one of the smallest catalytic RNAs. These RNAs have an endonuclease "
    "function.",
}


def qa(pairs):
    return [(pair["question"], pair["answer"]) for pair in pairs]


def write_jsonl(path: Path, rows, *, raw_lines=()) -> str:
    lines = [json.dumps(row) for row in rows] + list(raw_lines)
    path.write_text("\n".join(lines) + "\n")
    return str(path)


# --- yeast ------------------------------------------------------------------------------


def test_yeast_cds_questions_and_answers():
    pairs = qa_pairs(YEAST_CDS)
    assert qa(pairs) == [
        (
            "Describe this gene.",
            "Putative permease; member of the allantoate transporter subfamily of the "
            "major facilitator superfamily.",
        ),
        ("What does it encode?", "It encodes putative permease SEO1."),
        (
            "What molecular function does this gene have?",
            "Its molecular functions are transmembrane transporter activity and "
            "transporter activity.",
        ),
        (
            "Which biological process is it involved in?",
            "It is involved in anion transport, transmembrane transport, and transport.",
        ),
        (
            "Where in the cell does its product act?",
            "Its product is located in the cell periphery, integral component of membrane, "
            "and membrane.",
        ),
    ]
    assert [p["question_id"] for p in pairs] == [
        "YAL067C#describe",
        "YAL067C#product",
        "YAL067C#function",
        "YAL067C#process",
        "YAL067C#component",
    ]
    first = pairs[0]
    assert first["id"] == "YAL067C"
    assert first["kind"] == "yeast"
    assert first["sequence"] == "ATGTATCGATTAG"  # canonical: uppercase
    assert first["chrom"] == "chr01" and first["feature"] == "CDS"
    assert "gene" not in first and "text" not in first


def test_yeast_empty_fields_are_skipped_not_unknown():
    pairs = qa_pairs(YEAST_BARE)
    assert qa(pairs) == [
        ("Describe this gene.", "Hypothetical protein; identified by gene-trapping."),
        ("What does it encode?", "It encodes a hypothetical protein."),
    ]
    no_product = dict(YEAST_BARE, product="", text="  ")
    assert qa_pairs(no_product) == []


def test_yeast_single_terms_and_sgd_protein_names():
    row = dict(
        YEAST_BARE,
        product="Tda8p",
        go_function="structural constituent of cell wall",
        go_component="fungal-type cell wall",
    )
    answers = dict(qa(qa_pairs(row)))
    assert answers[GENE_PRODUCT] == "It encodes the protein Tda8p."
    assert answers[GENE_FUNCTION] == (
        "Its molecular function is structural constituent of cell wall."
    )
    assert answers[GENE_COMPONENT] == "Its product is located in the fungal-type cell wall."
    assert GENE_PROCESS not in answers


def test_yeast_rna_genes_say_what_rna_they_encode():
    trna = dict(qa(qa_pairs(YEAST_TRNA)))
    assert trna[GENE_PRODUCT] == "It encodes a transfer RNA (tRNA-Pro), not a protein."
    assert trna[GENE_PROCESS] == "It is involved in translational elongation."
    assert trna[DESCRIBE_GENE] == "Proline tRNA (tRNA-Pro), predicted by tRNAscan-SE analysis."

    snorna = qa_pairs(YEAST_SNORNA)
    answers = dict(qa(snorna))
    assert answers[GENE_PRODUCT] == (
        "It encodes an H/ACA small nucleolar RNA (SNR161), not a protein."
    )
    assert answers[GENE_COMPONENT] == (
        "Its product is located in the box H/ACA snoRNP complex and nucleolus."
    )
    assert GENE_FUNCTION not in answers
    assert snorna[0]["sequence"] == "ACGTACGT"  # U read as T

    generic = dict(YEAST_SNORNA, text="ncRNA; RNA of Unknown Function", product="RUF21")
    assert dict(qa(qa_pairs(generic)))[GENE_PRODUCT] == (
        "It encodes a non-coding RNA (RUF21), not a protein."
    )
    rrna = dict(YEAST_SNORNA, feature="rRNA", text="18S ribosomal RNA (18S rRNA); component")
    assert dict(qa(qa_pairs(dict(rrna, product="RDN18-1"))))[GENE_PRODUCT] == (
        "It encodes an 18S ribosomal RNA (RDN18-1), not a protein."
    )


def test_go_terms_with_commas_use_semicolons_and_can_be_capped():
    row = dict(
        YEAST_BARE,
        go_process="b process; positive regulation of transcription, DNA-templated; "
        "a process; b process",
    )
    answers = dict(qa(qa_pairs(row)))
    assert answers[GENE_PROCESS] == (
        "It is involved in b process; positive regulation of transcription, DNA-templated; "
        "and a process."  # duplicates dropped, order kept
    )
    capped = dict(qa(qa_pairs(row, max_terms=1)))
    assert capped[GENE_PROCESS] == "It is involved in b process and 2 other processes."
    list_row = dict(YEAST_BARE, go_function=["RNA binding", "  ", "RNA binding"])
    assert dict(qa(qa_pairs(list_row)))[GENE_FUNCTION] == "Its molecular function is RNA binding."


# --- rfam -------------------------------------------------------------------------------


def test_rfam_questions_and_answers():
    pairs = qa_pairs(RFAM_5S)
    assert qa(pairs) == [
        (
            "Describe this RNA.",
            "5S ribosomal RNA (5S rRNA) is a component of the large ribosomal subunit in "
            "both prokaryotes and eukaryotes.",
        ),
        ("What class of RNA is this?", "This is a 5S ribosomal RNA."),
        (
            "Which RNA family does it belong to?",
            "It belongs to the Rfam family 5S ribosomal RNA (RF00001).",
        ),
        (
            "What is its function?",
            "Its Gene Ontology terms are structural constituent of ribosome and ribosome.",
        ),
    ]
    assert pairs[0]["question_id"] == "RF00001_X52048_1_2-120#describe"
    assert pairs[0]["kind"] == "rfam"
    assert (pairs[0]["label"], pairs[0]["rfam_acc"], pairs[0]["split"]) == (
        "5S_rRNA",
        "RF00001",
        "train",
    )


def test_rfam_without_comment_is_described_by_class_and_family():
    assert qa(qa_pairs(RFAM_MIRNA)) == [
        ("Describe this RNA.", "It is a microRNA of the Rfam family microRNA mir-454 (RF00746)."),
        ("What class of RNA is this?", "This is a microRNA."),
        (
            "Which RNA family does it belong to?",
            "It belongs to the Rfam family microRNA mir-454 (RF00746).",
        ),
        (
            "What is its function?",
            "Its Gene Ontology terms are micro-ribonucleoprotein complex and gene silencing "
            "by miRNA.",
        ),
    ]


def test_rfam_without_go_skips_function_and_keeps_parenthesised_names_readable():
    answers = dict(qa(qa_pairs(RFAM_NO_GO)))
    assert RNA_FUNCTION not in answers
    assert answers[DESCRIBE_RNA] == "The hammerhead ribozyme is one of the smallest catalytic RNAs."
    assert answers[RNA_FAMILY] == (
        "It belongs to the Rfam family Hammerhead ribozyme (type I), accession RF00163."
    )
    assert answers[RNA_CLASS] == "This is a ribozyme."


@pytest.mark.parametrize(
    ("label", "answer"),
    [
        ("5S_rRNA", "This is a 5S ribosomal RNA."),
        ("5_8S_rRNA", "This is a 5.8S ribosomal RNA."),
        ("tRNA", "This is a transfer RNA."),
        ("CD-box", "This is a C/D box small nucleolar RNA."),
        ("HACA-box", "This is an H/ACA box small nucleolar RNA."),
        ("scaRNA", "This is a small Cajal body-specific RNA."),
        ("miRNA", "This is a microRNA."),
        ("Intron_gpI", "This is a group I intron."),
        ("Intron_gpII", "This is a group II intron."),
        ("IRES", "This is an internal ribosome entry site."),
        ("leader", "This is a leader RNA."),
        ("riboswitch", "This is a riboswitch."),
        ("ribozyme", "This is a ribozyme."),
        ("odd_new_class", "This is an odd new class."),
    ],
)
def test_rna_class_answers(label, answer):
    row = {"id": "r", "sequence": "ACGU", "label": label, "rfam_acc": "RF0", "text": ""}
    assert qa(qa_pairs(row)) == [(RNA_CLASS, answer)]


def test_readable_rna_class_and_parse_rfam_text():
    assert readable_rna_class("CD-box") == "C/D box small nucleolar RNA"
    assert readable_rna_class("hacA-BOX") == "H/ACA box small nucleolar RNA"
    parsed = parse_rfam_text(
        "A. fumigatus snoRNA Afu_264. Rfam RNA type: Gene, snRNA, snoRNA, CD-box. "
        "Found in B. subtilis [1]. Second sentence. GO: RNA processing; nucleolus."
    )
    assert parsed.name == "A. fumigatus snoRNA Afu_264"
    assert parsed.rna_type == "Gene, snRNA, snoRNA, CD-box"
    assert parsed.description == "Found in B. subtilis [1]. Second sentence."
    assert parsed.go_terms == ("RNA processing", "nucleolus")
    bare = parse_rfam_text("Plasmodium RNase_P. Rfam RNA type: Gene, ribozyme.")
    assert (bare.name, bare.rna_type, bare.description, bare.go_terms) == (
        "Plasmodium RNase_P",
        "Gene, ribozyme",
        "",
        (),
    )
    row = {
        "id": "r",
        "sequence": "ACGT",
        "label": "CD-box",
        "text": "Small nucleolar RNA R72. Rfam RNA type: Gene, snRNA, snoRNA, CD-box. snoR72 is a "
        "C/D box small nucleolar RNA, e.g. in A. thaliana [1]. It guides methylation.",
    }
    answers = dict(qa(qa_pairs(row)))
    assert answers[DESCRIBE_RNA] == "snoR72 is a C/D box small nucleolar RNA, e.g. in A. thaliana."
    assert answers[RNA_FAMILY] == "It belongs to the Rfam family Small nucleolar RNA R72."


# --- kinds, questions, determinism ------------------------------------------------------


def test_detect_kind_and_describe_question():
    assert detect_kind(YEAST_CDS) == "yeast"
    assert detect_kind(RFAM_5S) == "rfam"
    assert detect_kind({"id": "x", "sequence": "A", "text": "t"}) == "text"
    assert detect_kind({"id": "x", "sequence": "A"}) is None
    assert describe_question("yeast") == DESCRIBE_GENE == "Describe this gene."
    assert describe_question("rfam") == DESCRIBE_RNA == "Describe this RNA."
    assert describe_question(None) == DEFAULT_QUESTION == "Describe this sequence."
    assert describe_question("text") == DEFAULT_QUESTION
    for kind, templates in TEMPLATES.items():
        assert templates[0].question == describe_question(kind)


def test_plain_text_rows_get_the_default_question():
    row = {"id": "x", "sequence": "acgu", "text": "  a   small RNA "}
    assert qa(qa_pairs(row)) == [(DEFAULT_QUESTION, "A small RNA.")]


def test_every_answer_is_one_trimmed_sentence_ending_with_a_period():
    for row in (YEAST_CDS, YEAST_BARE, YEAST_TRNA, YEAST_SNORNA, RFAM_5S, RFAM_MIRNA, RFAM_NO_GO):
        for pair in qa_pairs(row):
            answer = pair["answer"]
            assert answer == answer.strip() and answer.endswith(".")
            assert "  " not in answer and "unknown" not in answer.lower()


def test_qa_pairs_is_deterministic_and_does_not_change_the_row():
    before = json.dumps(YEAST_CDS, sort_keys=True)
    assert qa_pairs(YEAST_CDS) == qa_pairs(YEAST_CDS)
    assert json.dumps(YEAST_CDS, sort_keys=True) == before


# --- errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"sequence": "ACGT", "text": "t"}, "row has no 'id'"),
        ({"id": "a", "text": "t"}, "row 'a' has no 'sequence'"),
        ({"id": "a", "sequence": "  ", "text": "t"}, "row 'a' has no 'sequence'"),
        ({"id": "a", "sequence": "ACGT"}, "row 'a': cannot tell its kind"),
        ({"id": "a", "sequence": "ACGTE", "text": "t"}, "row 'a': 'E' at position 5"),
        ({"id": "a", "sequence": "ACGT", "product": 3.5j}, "row 'a': field 'product'"),
    ],
)
def test_bad_rows_raise_seqchat_errors(row, message):
    with pytest.raises(QAInputError) as caught:
        qa_pairs(row)
    assert isinstance(caught.value, SeqchatError)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_bad_json_names_file_and_line(tmp_path):
    path = write_jsonl(tmp_path / "in.jsonl", [YEAST_CDS, YEAST_BARE], raw_lines=["{not json"])
    out = tmp_path / "qa.jsonl"
    with pytest.raises(QAInputError) as caught:
        write_qa_jsonl([path], out)
    message = str(caught.value)
    assert message.startswith(f"{path}:3: bad JSON")
    assert "\n" not in message
    assert not out.exists()  # no partial output
    assert list(tmp_path.iterdir()) == [Path(path)]  # no temporary file left behind


def test_missing_sequence_in_file_names_file_and_line(tmp_path):
    rows = [YEAST_CDS, {"id": "bad", "text": "x", "product": "p"}]
    path = write_jsonl(tmp_path / "in.jsonl", rows)
    with pytest.raises(QAInputError, match=r":2: row 'bad' has no 'sequence'$"):
        list(iter_qa([path]))
    not_object = write_jsonl(tmp_path / "list.jsonl", [[1, 2]])
    with pytest.raises(QAInputError, match=r"list\.jsonl:1: expected a JSON object, not list$"):
        list(iter_qa(not_object))


def test_file_and_option_errors(tmp_path):
    with pytest.raises(QAInputError, match="nope.jsonl: no such file"):
        write_qa_jsonl([tmp_path / "nope.jsonl"], tmp_path / "out.jsonl")
    path = write_jsonl(tmp_path / "in.jsonl", [YEAST_CDS])
    with pytest.raises(QAInputError, match="unknown kind 'protein'"):
        write_qa_jsonl([path], tmp_path / "out.jsonl", kinds={"protein"})
    with pytest.raises(QAInputError, match="output folder does not exist"):
        write_qa_jsonl([path], tmp_path / "missing" / "out.jsonl")


# --- files ------------------------------------------------------------------------------


def test_file_round_trip_with_kind_filter_and_gzip(tmp_path):
    yeast = write_jsonl(tmp_path / "yeast.jsonl", [YEAST_CDS, YEAST_BARE], raw_lines=["", "  "])
    rfam = tmp_path / "rfam.jsonl.gz"
    with gzip.open(rfam, "wt", encoding="utf-8") as handle:
        handle.write("\n".join(json.dumps(row) for row in (RFAM_5S, RFAM_MIRNA)) + "\n")

    out = tmp_path / "qa.jsonl"
    count = write_qa_jsonl([yeast, rfam], out)
    lines = out.read_text(encoding="utf-8").splitlines()
    assert count == len(lines) == 5 + 2 + 4 + 4
    written = [json.loads(line) for line in lines]
    rows = (YEAST_CDS, YEAST_BARE, RFAM_5S, RFAM_MIRNA)
    expected = [pair for row in rows for pair in qa_pairs(row)]
    assert written == expected
    assert written == list(iter_qa([yeast, rfam]))
    assert len({pair["question_id"] for pair in written}) == count
    assert list(written[0]) == [
        *("id", "question_id", "kind", "question", "answer", "sequence"),
        *("chrom", "feature"),
    ]

    only_rfam = tmp_path / "rfam_qa.jsonl.gz"
    assert write_qa_jsonl([yeast, rfam], only_rfam, kinds="rfam") == 8
    with gzip.open(only_rfam, "rt", encoding="utf-8") as handle:
        assert {json.loads(line)["kind"] for line in handle} == {"rfam"}

    assert write_qa_jsonl(yeast, tmp_path / "single.jsonl") == 7  # one path, not a list


def test_output_is_byte_identical_across_runs(tmp_path):
    path = write_jsonl(tmp_path / "in.jsonl", [YEAST_TRNA, RFAM_NO_GO, YEAST_SNORNA])
    first, second = tmp_path / "a.jsonl.gz", tmp_path / "b.jsonl.gz"
    write_qa_jsonl([path], first)
    write_qa_jsonl([path], second)
    assert first.read_bytes() == second.read_bytes()


def test_output_may_replace_its_input(tmp_path):
    path = write_jsonl(tmp_path / "in.jsonl", [YEAST_BARE])
    assert write_qa_jsonl([path], path) == 2
    assert [json.loads(line)["question"] for line in Path(path).read_text().splitlines()] == [
        DESCRIBE_GENE,
        GENE_PRODUCT,
    ]


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="shared training data not available")
@pytest.mark.parametrize("name", ["yeast_sgd", "rfam_nrc"])
def test_first_rows_of_the_shared_data(name):
    path = SHARED_DATA / name / "train.jsonl"
    if not path.is_file():
        pytest.skip(f"{path} not available")
    with path.open(encoding="utf-8") as handle:
        rows = [json.loads(line) for line in itertools.islice(handle, 40)]
    pairs = [pair for row in rows for pair in qa_pairs(row)]
    assert len(pairs) >= len(rows)
    assert len({pair["question_id"] for pair in pairs}) == len(pairs)
    for pair in pairs:
        assert pair["answer"].endswith(".") and pair["answer"] == pair["answer"].strip()
        assert pair["question"] in {t.question for t in TEMPLATES[pair["kind"]]}
