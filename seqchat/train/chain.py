"""The PyTorch chain that training optimises: encoder -> projector -> the LLM dequantized
from the served GGUF, with the prompt laid out exactly as the runtime lays it out."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import yaml

from seqchat.bundle import Bundle
from seqchat.encode.encoders import NucleotideEncoder
from seqchat.encode.projector import load_projector
from seqchat.encode.specs import EncoderSpec
from seqchat.llm.prompt import PromptLayout
from seqchat.llm.vocabulary import GgufVocabulary
from seqchat.train.examples import TrainingError

IGNORE_INDEX = -100


def load_training_llm(gguf_path: Path) -> torch.nn.Module:
    """The LLM in transformers, dequantized from the bundle's own GGUF."""
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32
    )
    model.requires_grad_(False)
    model.eval()
    return model


class SeqchatChain(torch.nn.Module):
    """Encoder -> projector -> LLM, computing the loss on answer tokens."""

    def __init__(
        self, encoder: NucleotideEncoder, projector: torch.nn.Module, llm: torch.nn.Module
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.projector = projector
        self.llm = llm

    def soft_tokens(self, sequences: Sequence[str]) -> list[torch.Tensor]:
        return [self.projector(states) for states in self.encoder.states(sequences)]

    def forward(
        self, sequences: Sequence[str], layouts: Sequence[PromptLayout], targets: Sequence[list[int]]
    ) -> torch.Tensor:
        """Mean cross-entropy over the target tokens of the batch."""
        embeddings, labels = self.inputs(sequences, layouts, targets)
        logits = self._logits(embeddings)
        return torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]),
            labels[:, 1:].reshape(-1),
            ignore_index=IGNORE_INDEX,
        )

    def _logits(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        embeddings, attention = batch
        return self.llm(inputs_embeds=embeddings, attention_mask=attention).logits

    def inputs(
        self, sequences: Sequence[str], layouts: Sequence[PromptLayout], targets: Sequence[list[int]]
    ) -> tuple[tuple[torch.Tensor, torch.Tensor], torch.Tensor]:
        """Right-padded inputs_embeds laid out as at serving time, and the labels."""
        embed = self.llm.get_input_embeddings()
        device = embed.weight.device
        rows, label_rows = [], []
        for soft, layout, target in zip(self.soft_tokens(sequences), layouts, targets):
            def ids(values: Sequence[int]) -> torch.Tensor:
                return torch.tensor(list(values), dtype=torch.long, device=device)

            rows.append(
                torch.cat(
                    [embed(ids(layout.prefix_ids)), soft.to(embed.weight.dtype),
                     embed(ids(layout.suffix_ids)), embed(ids(target))]
                )
            )
            n_context = len(layout.prefix_ids) + soft.shape[0] + len(layout.suffix_ids)
            label_rows.append(
                torch.cat([torch.full((n_context,), IGNORE_INDEX, device=device), ids(target)])
            )
        width = max(row.shape[0] for row in rows)
        embeddings = torch.zeros(len(rows), width, rows[0].shape[1], device=device)
        attention = torch.zeros(len(rows), width, dtype=torch.long, device=device)
        labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long, device=device)
        for i, (row, label) in enumerate(zip(rows, label_rows)):
            embeddings[i, : row.shape[0]] = row
            attention[i, : row.shape[0]] = 1
            labels[i, : label.shape[0]] = label
        return (embeddings, attention), labels

    @torch.no_grad()
    def teacher_forced_tokens(
        self, sequence: str, layout: PromptLayout, target: list[int]
    ) -> list[int]:
        """The argmax prediction for each target token (parity with the runtime)."""
        batch, labels = self.inputs([sequence], [layout], [target])
        logits = self._logits(batch)[0]
        positions = (labels[0, 1:] != IGNORE_INDEX).nonzero().flatten()
        return logits[positions].argmax(dim=-1).tolist()


def fresh_encoder(config_path: Path, alphabet: str) -> NucleotideEncoder:
    """A randomly initialised multimolecule encoder from a config file (JSON or YAML with
    `model_type`, e.g. rnafm, and its sizes): for when no pretrained weights can be had."""
    import multimolecule
    from transformers import AutoConfig, AutoModel

    settings = yaml.safe_load(config_path.read_text())
    if not isinstance(settings, dict) or "model_type" not in settings:
        raise TrainingError(f"{config_path}: an encoder config needs 'model_type' (e.g. rnafm)")
    model_type = settings.pop("model_type")
    config = AutoConfig.for_model(model_type, **settings)
    model = AutoModel.from_config(config)
    tokenizer = multimolecule.RnaTokenizer() if alphabet == "rna" else multimolecule.DnaTokenizer()
    spec = EncoderSpec(source=str(config_path), kind="multimolecule", alphabet=alphabet)  # type: ignore[arg-type]
    return NucleotideEncoder(model, tokenizer, spec)


def chain_from_bundle(bundle: Bundle) -> tuple[SeqchatChain, GgufVocabulary]:
    """The PyTorch twin of a served bundle (parity checks and the PyTorch benchmark)."""
    if bundle.projector_weights is None:
        raise TrainingError(f"{bundle.root}: no projector weights")
    encoder = NucleotideEncoder.load(bundle.encoder, "cpu")
    projector = load_projector(bundle.projector, bundle.projector_weights)
    llm = load_training_llm(bundle.llm_path)
    if bundle.lora_path is not None:
        from seqchat.llm.lora_gguf import merge_lora_gguf

        # merged into the weights: W + (alpha / r) B A, what llama.cpp computes at scale 1
        merge_lora_gguf(llm, bundle.lora_path, bundle.llm_path)
    return SeqchatChain(encoder, projector, llm).eval(), GgufVocabulary.load(bundle.llm_path)
