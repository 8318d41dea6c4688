"""The annotation pipeline as a library: records -> encoder -> projector -> GGUF runtime.

`Annotator` is what the CLI, a Snakemake rule or a notebook calls:

    with Annotator.load("default") as annotator:
        for annotation in annotator.annotate(read_records(["genes.fa"])):
            print(annotation.id, annotation.description)

Everything streams: records are encoded a chunk at a time, the runtime pulls soft prompts
only when a slot is free, and results come back in input order.
"""

from __future__ import annotations

import itertools
import re
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

import llama_cpp

from seqchat.bundle import CONFIG_NAME, Bundle, resolve_bundle
from seqchat.homology.evidence import (
    EVIDENCE_COLUMNS,
    Evidence,
    copied_hit,
    evidence_cells,
    evidence_lines,
    hit_name,
)
from seqchat.homology.search import Hit
from seqchat.io.cache import CachedAnswer, ResultCache
from seqchat.io.digest import sha256_file
from seqchat.io.sequences import SequenceRecord
from seqchat.io.writers import ANNOTATION_COLUMNS
from seqchat.llm.confidence import ConfidenceModel, HitStrength, features
from seqchat.llm.pool import RuntimePool
from seqchat.llm.prompt import (
    PromptError,
    PromptSpec,
    Tokenize,
    check_question,
    fit_evidence,
    layout_for,
)
from seqchat.llm.runtime import DecodingSettings, Generation, SoftPrompt
from seqchat.loading import (
    SoftTokens,
    bundle_references,
    load_runtime_pool,
    load_soft_tokenizer,
)
from seqchat.system import available_cpus


@dataclass(frozen=True)
class Annotation:
    id: str
    length: int
    description: str
    n_tokens: int
    mean_logprob: float
    hits: tuple[Hit, ...] | None = None
    """The record's reference hits, best first; None when the run searches no reference."""
    source: str | None = None
    """With a grounded prompt: "generated", or "hit:REF_ID" when the answer copies a hit."""
    truncated: bool = False
    """The answer reached the token cap: it is cut at its last sentence or clause end."""
    confidence: float | None = None
    """The probability that the answer's entity is right (`seqchat.llm.confidence`)."""

    def as_row(self) -> dict[str, object]:
        row: dict[str, object] = {
            "id": self.id,
            "length": self.length,
            "description": self.description,
            "n_tokens": self.n_tokens,
            "mean_logprob": round(self.mean_logprob, 4),
            "truncated": self.truncated,
        }
        if self.hits is not None:
            row.update(evidence_cells(self.hits))
        if self.source is not None:
            row["source"] = self.source
        if self.confidence is not None:
            row["confidence"] = self.confidence
        return row


Searched = tuple[SequenceRecord, "tuple[Hit, ...] | None"]
"""A record and its reference hits (None when the run searches no reference)."""


class Annotator:
    """Writes one description per sequence with a bundle's models."""

    def __init__(
        self,
        bundle: Bundle,
        soft_tokenizer: SoftTokens,
        runtime: RuntimePool,
        *,
        question: str | None = None,
        decoding: DecodingSettings | None = None,
        evidence: Evidence | None = None,
        chunk_size: int = 64,
    ) -> None:
        self.bundle = bundle
        self.evidence = evidence
        self.soft_tokenizer = soft_tokenizer
        self.runtime = runtime
        self.question = bundle.prompt.question if question is None else question
        self.decoding = decoding or bundle.decoding
        self.chunk_size = chunk_size
        self.cache_block = 2048
        check_question(bundle.prompt, question)
        self.layout = layout_for(runtime.vocabulary, bundle.prompt, self.question)
        self.confidence_model = ConfidenceModel.from_config(bundle.config.get("confidence"))

    def check_fits(self) -> None:
        """Refuse, before any sequence is read, settings whose longest prompt and answer
        cannot fit one slot's context: the prompt with a long question, the most soft
        tokens, the whole evidence budget, and `max_new_tokens`."""
        n_prompt = len(self.layout.prefix_ids) + len(self.layout.suffix_ids)
        n_prompt += self.bundle.projector.max_soft_tokens
        if self.bundle.prompt.grounded:
            n_prompt += self.bundle.prompt.evidence_tokens
        needed = n_prompt + self.decoding.max_new_tokens
        if needed > self.bundle.n_ctx_per_slot:
            raise PromptError(
                f"a prompt of up to {n_prompt} tokens (question, soft tokens and evidence) "
                f"plus {self.decoding.max_new_tokens} new tokens exceeds the "
                f"{self.bundle.n_ctx_per_slot}-token context of a slot (llm.n_ctx_per_slot "
                "in the bundle): shorten the question or lower --max-new-tokens"
            )

    @classmethod
    def load(
        cls,
        bundle: str | Bundle = "default",
        *,
        device: str = "auto",
        threads: int | None = None,
        parallel: int = 8,
        question: str | None = None,
        decoding: DecodingSettings | None = None,
        allow_external_paths: bool = False,
        trust_remote_code: bool = False,
        references: Iterable[str | Path] = (),
        bundle_reference: bool = True,
    ) -> Annotator:
        """`references`: reference set directories searched beside the bundle's own
        (`bundle_reference=False`: instead of it)."""
        bundle = resolve_bundle(
            bundle, allow_external_paths=allow_external_paths, trust_remote_code=trust_remote_code
        )
        threads = threads or available_cpus()
        evidence = Evidence.load(
            [*(bundle_references(bundle, threads) if bundle_reference else []), *references],
            threads=1,
        )
        soft_tokenizer = load_soft_tokenizer(bundle, device)
        on_gpu = soft_tokenizer.device_type == "cuda"
        pool = load_runtime_pool(
            bundle, on_gpu=on_gpu, threads=threads, parallel=parallel,
            n_ctx_per_slot=bundle.n_ctx_per_slot,
        )
        # The encoder runs beside busy llama.cpp contexts: more threads would only spin
        # against them.
        soft_tokenizer.use_threads(threads if len(pool.runtimes) == 1 else 1)
        return cls(
            bundle, soft_tokenizer, pool, question=question, decoding=decoding, evidence=evidence
        )

    def close(self) -> None:
        self.runtime.close()

    def __enter__(self) -> Annotator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def columns(self) -> tuple[str, ...]:
        """The output columns: the evidence columns too when a reference is searched, the
        answer's source when the prompt shows the evidence, and last the confidence."""
        evidence = EVIDENCE_COLUMNS if self.evidence is not None else ()
        source = ("source",) if self.bundle.prompt.grounded else ()
        return ANNOTATION_COLUMNS + evidence + source + ("confidence",)

    def _searched(self, records: Iterable[SequenceRecord]) -> Iterator[Searched]:
        if self.evidence is None:
            return ((record, None) for record in records)
        return self.evidence.searched(records)

    def _soft_prompts(self, searched: Iterable[Searched]) -> Iterator[SoftPrompt]:
        iterator = iter(searched)
        while chunk := list(itertools.islice(iterator, self.chunk_size)):
            matrices = self.soft_tokenizer([record.sequence for record, _hits in chunk])
            for (record, hits), matrix in zip(chunk, matrices):
                yield SoftPrompt(record.id, matrix, self._suffix(hits))

    def _suffix(self, hits: tuple[Hit, ...] | None) -> tuple[int, ...]:
        """The tokens after a sequence's soft tokens: with its evidence when grounded."""
        if not self.bundle.prompt.grounded:
            return self.layout.suffix_ids
        tokenize = self.runtime.vocabulary.tokenize
        return self.layout.suffix_for(
            evidence_text(hits or (), self.bundle.prompt, tokenize), tokenize
        )

    def _finished(self, annotation: Annotation) -> Annotation:
        """What is written of a raw answer (as generated, or as the cache keeps it): cut at
        a clause end when it reached the token cap, and, when grounded, a copied hit's
        whole description in place of the copy; then its confidence."""
        if annotation.n_tokens >= self.decoding.max_new_tokens and not self.decoding.ignore_eos:
            annotation = replace(
                annotation, description=cut_at_clause(annotation.description), truncated=True
            )
        if self.bundle.prompt.grounded:
            hit = copied_hit(annotation.description, annotation.hits or ())
            if hit is None:
                annotation = replace(annotation, source="generated")
            else:
                annotation = replace(
                    annotation, description=hit.description, source=f"hit:{hit.reference_id}"
                )
        return replace(annotation, confidence=self.confidence_model.score(answer_features(annotation)))

    def annotate(
        self, records: Iterable[SequenceRecord], cache: ResultCache | None = None
    ) -> Iterator[Annotation]:
        """One annotation per record, in input order.

        Only the records in flight are held: those in the runtime's slots and those that
        finished before an earlier record did. With a `cache` (see `cache_context`), the
        input goes in blocks of `cache_block` records: answers found in the cache, or given
        earlier in the block to the same sequence, are not generated again."""
        if cache is None:
            yield from map(self._finished, self._generate(self._searched(records)))
            return
        iterator = self._searched(records)
        while block := list(itertools.islice(iterator, self.cache_block)):
            items = [self._cache_item(record) for record, _hits in block]
            known: dict[str, CachedAnswer | None] = {}
            to_generate: list[Searched] = []
            for (record, hits), item in zip(block, items):
                if item not in known:
                    known[item] = cache.get(item)
                    if known[item] is None:
                        to_generate.append((record, hits))
            fresh = self._generate(to_generate)
            for (record, hits), item in zip(block, items):
                answer = known[item]
                if answer is None:
                    generated = next(fresh)
                    answer = CachedAnswer(
                        generated.description, generated.n_tokens, generated.mean_logprob
                    )
                    known[item] = answer
                    cache.put(item, answer)
                yield self._finished(Annotation(
                    record.id, record.length, answer.description, answer.n_tokens,
                    answer.mean_logprob, hits,
                ))

    def _cache_item(self, record: SequenceRecord) -> str:
        """What a cached answer is filed under: the sequence, and when sampling, also the id
        that seeds the sampling."""
        if self.decoding.temperature > 0:
            return f"{record.id}\0{record.sequence}"
        return record.sequence

    def cache_context(self) -> dict[str, str]:
        """What, besides the sequence, decides an answer: the key space of a ResultCache."""
        context = {k: v for k, v in self.provenance().items() if k != "bundle"}
        context["question"] = self.question
        return context

    def _generate(self, searched: Iterable[Searched]) -> Iterator[Annotation]:
        waiting: deque[Searched] = deque()

        def remember(stream: Iterable[Searched]) -> Iterator[Searched]:
            for item in stream:
                waiting.append(item)
                yield item

        finished: dict[str, Generation] = {}
        generations = self.runtime.generate(
            self.layout.prefix_ids, self._soft_prompts(remember(searched)), self.decoding
        )
        for generation in generations:
            finished[generation.key] = generation
            while waiting and waiting[0][0].id in finished:
                record, hits = waiting.popleft()
                yield _annotation(record, hits, finished.pop(record.id))

    @cached_property
    def weight_digests(self) -> dict[str, str]:
        """sha256 of each of the bundle's weight files, hashed once: the provenance header
        and the cache key both need them, and the GGUF alone is tens of megabytes."""
        return self.bundle.sha256s()

    def provenance(self) -> dict[str, str]:
        from seqchat import __version__

        settings = self.decoding
        items = {
            "seqchat": __version__,
            "bundle": f"{self.bundle.name} ({self.bundle.root})",
            "system": self.bundle.prompt.system or "",
            "prompt": self.bundle.prompt.user.replace("{question}", self.question),
            "decoding": (
                f"max_new_tokens={settings.max_new_tokens} temperature={settings.temperature} "
                f"top_p={settings.top_p} seed={settings.seed}"
                + (f" no_repeat_ngram={settings.no_repeat_ngram}" if settings.no_repeat_ngram else "")
            ),
        }
        for name, digest in self.weight_digests.items():
            items[f"sha256_{name}"] = digest
        items["sha256_seqchat.yaml"] = sha256_file(self.bundle.root / CONFIG_NAME)
        items["llama_cpp"] = llama_cpp.__version__
        items["encoder_runtime"] = self.soft_tokenizer.runtime_name
        items["device"] = self.soft_tokenizer.device_type
        if self.evidence is not None:
            items.update(self.evidence.provenance())
        return items


def _annotation(
    record: SequenceRecord, hits: tuple[Hit, ...] | None, generation: Generation
) -> Annotation:
    return Annotation(
        id=record.id,
        length=record.length,
        description=generation.text,
        n_tokens=len(generation.token_ids),
        mean_logprob=generation.mean_logprob,
        hits=hits,
    )


def named_hit(annotation: Annotation) -> Hit | None:
    """The hit whose entity a finished answer gives: the one it was expanded from
    (`source`), else the first whose name (first clause) is the answer's own, compared
    case- and punctuation-insensitively, as the entity metric compares names."""
    hits = annotation.hits or ()
    if annotation.source is not None and annotation.source.startswith("hit:"):
        reference_id = annotation.source.removeprefix("hit:")
        return next((hit for hit in hits if hit.reference_id == reference_id), None)
    name = _name_words(annotation.description)
    return next((hit for hit in hits if name and _name_words(hit.description) == name), None)


_NOT_WORD = re.compile(r"[^\w]+")


def _name_words(text: str) -> str:
    return " ".join(_NOT_WORD.sub(" ", hit_name(text).casefold()).split())


def _strength(hit: Hit | None) -> HitStrength | None:
    return None if hit is None else HitStrength(hit.identity, hit.query_coverage, hit.evalue)


def answer_features(annotation: Annotation) -> dict[str, float]:
    """The confidence model's inputs for a finished answer: what the annotator scores, and
    what `seqchat.evaluate.calibration` fits on."""
    best = annotation.hits[0] if annotation.hits else None
    return features(_strength(named_hit(annotation)), _strength(best), annotation.mean_logprob)


def evidence_text(hits: Sequence[Hit], spec: PromptSpec, tokenize: Tokenize) -> str:
    """What a grounded prompt shows of a sequence's hits, within the bundle's token budget:
    the same text in training (seqchat.train) and serving."""
    return fit_evidence(evidence_lines(hits), tokenize, spec.evidence_tokens)


_CLAUSE_END = re.compile(r"[.;!?](?=\s|$)")


def cut_at_clause(text: str) -> str:
    """`text` up to its last sentence or clause end (a final ';' becomes '.'), so that a
    capped answer does not stop mid-word; the whole text when it has no such end."""
    ends = [match.end() for match in _CLAUSE_END.finditer(text)]
    if not ends:
        return text
    cut = text[: ends[-1]]
    return cut[:-1] + "." if cut.endswith(";") else cut


def with_decoding(base: DecodingSettings, **overrides: object) -> DecodingSettings:
    """The bundle's decoding defaults with the user's explicit choices on top."""
    chosen = {name: value for name, value in overrides.items() if value is not None}
    return replace(base, **chosen)
