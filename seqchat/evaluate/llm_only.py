"""The LLM-only baseline: the sequence given as text to the same GGUF LLM, no encoder.

This is the seeds' "RNA Sequence" row: what a user gets by pasting a sequence into a chat
model. It shares the runtime, the chat template and the decoding settings with
`seqchat annotate`, so the comparison isolates what the encoder and projector add.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator

import numpy as np

from seqchat.annotate import Annotation
from seqchat.io.sequences import SequenceRecord
from seqchat.llm.prompt import PromptSpec, layout_for
from seqchat.llm.runtime import DecodingSettings, GgufRuntime, SoftPrompt

DEFAULT_TEXT_QUESTION = "What is the function of this DNA or RNA sequence? Answer in one sentence."


def sequence_as_text(sequence: str, max_nucleotides: int) -> str:
    shown = sequence[:max_nucleotides]
    more = f" (first {max_nucleotides} of {len(sequence)} nt)" if len(sequence) > max_nucleotides else ""
    return f"Sequence{more}: {shown}"


def annotate_as_text(
    runtime: GgufRuntime,
    records: Iterable[SequenceRecord],
    *,
    question: str = DEFAULT_TEXT_QUESTION,
    decoding: DecodingSettings = DecodingSettings(),
    max_nucleotides: int = 1000,
) -> Iterator[Annotation]:
    """One answer per record, in input order; the shared chat prefix is decoded once."""
    layout = layout_for(runtime.vocabulary, PromptSpec(user="{sequence}"), "")
    no_soft_tokens = np.zeros((0, runtime.n_embd), dtype=np.float32)
    by_key: dict[str, SequenceRecord] = {}
    order: deque[str] = deque()

    def prompts() -> Iterator[SoftPrompt]:
        for record in records:
            by_key[record.id] = record
            order.append(record.id)
            text = f"{sequence_as_text(record.sequence, max_nucleotides)}\n\n{question}"
            suffix = runtime.vocabulary.tokenize(text, False) + list(layout.suffix_ids)
            yield SoftPrompt(record.id, no_soft_tokens, tuple(suffix))

    finished = {}
    for generation in runtime.generate(layout.prefix_ids, prompts(), decoding):
        finished[generation.key] = generation
        while order and order[0] in finished:
            key = order.popleft()
            record, done = by_key.pop(key), finished.pop(key)
            yield Annotation(key, record.length, done.text, len(done.token_ids), done.mean_logprob)
