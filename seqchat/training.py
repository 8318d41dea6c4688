"""Both training stages, in PyTorch, producing bundles the GGUF runtime serves unchanged.

Stage 1 (`align`): the sequence alone goes in; the loss is on the description tokens; the
projector trains (and the encoder with `train_encoder`). Stage 2 (`instruct`): sequence +
question -> answer, starting from a stage-1 bundle; the projector trains, and with
`lora_rank` a LoRA on the LLM's attention projections, exported as a GGUF adapter.

The LLM is loaded by transformers from the very GGUF file the bundle serves, and the prompt
is laid out by `seqchat.prompt.layout_for` with llama.cpp's tokenizer, as at serving time.
Runs survive: checkpoints hold the trainable weights (safetensors), optimizer, scheduler,
RNG states and data position, so `resume` reaches the same final weights.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch
import yaml
from safetensors.torch import load_file, save_file

from seqchat.bundle import CONFIG_NAME, Bundle, load_bundle
from seqchat.encoders import NucleotideEncoder
from seqchat.errors import SeqchatError
from seqchat.projector import build_projector, load_projector, save_projector
from seqchat.prompt import PromptLayout, PromptSpec, layout_for
from seqchat.runtime import GgufVocabulary
from seqchat.sequences import SequenceInputError, canonical_sequence
from seqchat.specs import EncoderSpec, ProjectorConfig

Stage = Literal["align", "instruct"]
IGNORE_INDEX = -100


class TrainingError(SeqchatError):
    """Bad training data or settings, reported before any training starts."""


@dataclass(frozen=True)
class Example:
    sequence: str
    answer: str
    question: str | None = None


@dataclass
class TrainSettings:
    stage: Stage
    data: list[str]
    model: str
    out: str
    epochs: int = 1
    max_steps: int | None = None
    lr: float = 1e-3
    encoder_lr: float | None = None
    batch_size: int = 8
    val_fraction: float = 0.05
    val_data: list[str] = field(default_factory=list)
    val_every: int = 50
    val_max_examples: int = 256
    checkpoint_every: int = 100
    warmup_steps: int = 20
    seed: int = 0
    train_encoder: bool = False
    init_encoder: str | None = None
    lora_rank: int = 0
    lora_alpha: float | None = None
    projector_type: str | None = None
    max_soft_tokens: int | None = None
    pool_stride: int | None = None
    max_target_tokens: int = 96
    question: str | None = None
    resume: bool = False
    threads: int | None = None
    device: str = "auto"


# --- data --------------------------------------------------------------------------------


def _json_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open() as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise TrainingError(f"{path}:{number}: not valid JSON ({error.msg})") from error
            if not isinstance(row, dict):
                raise TrainingError(f"{path}:{number}: expected a JSON object")
            yield number, row


def _fasta_tsv_rows(fasta: Path, table: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    from seqchat.sequences import read_records

    descriptions: dict[str, str] = {}
    with table.open() as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip() or line.startswith("#"):
                continue
            identifier, sep, text = line.rstrip("\n").partition("\t")
            if not sep:
                raise TrainingError(f"{table}:{number}: expected id<TAB>description")
            descriptions[identifier] = text
    for record in read_records([str(fasta)]):
        if record.id not in descriptions:
            raise TrainingError(f"{fasta}: record {record.id!r} has no description in {table}")
        yield record.index + 1, {"sequence": record.sequence, "text": descriptions[record.id]}


def load_examples(paths: Sequence[str], stage: Stage) -> list[Example]:
    """Read training data, checking every row before training starts.

    align: JSONL with `sequence` and `text`, or a FASTA file followed by an id<TAB>text TSV.
    instruct: JSONL with `sequence`, `question` and `answer`."""
    fields = ("sequence", "text") if stage == "align" else ("sequence", "question", "answer")
    examples: list[Example] = []
    items = list(paths)
    while items:
        path = Path(items.pop(0))
        if not path.is_file():
            raise TrainingError(f"{path}: no such file")
        if path.suffix in (".fa", ".fasta", ".fna", ".gz") and stage == "align":
            if not items:
                raise TrainingError(f"{path}: a FASTA file needs a TSV of descriptions after it")
            rows = _fasta_tsv_rows(path, Path(items.pop(0)))
        else:
            rows = _json_rows(path)
        for number, row in rows:
            missing = [name for name in fields if not str(row.get(name, "")).strip()]
            if missing:
                raise TrainingError(f"{path}:{number}: missing or empty {', '.join(missing)}")
            try:
                sequence = canonical_sequence(str(row["sequence"]))
            except SequenceInputError as error:
                raise TrainingError(f"{path}:{number}: {error}") from error
            if stage == "align":
                examples.append(Example(sequence, str(row["text"]).strip()))
            else:
                examples.append(
                    Example(sequence, str(row["answer"]).strip(), str(row["question"]).strip())
                )
    if not examples:
        raise TrainingError(f"{', '.join(paths)}: no training examples")
    return examples


def split_validation(
    examples: list[Example], fraction: float, seed: int
) -> tuple[list[Example], list[Example]]:
    """A seeded random split. Data with near-duplicates (paralogs) should come with its own
    validation file (`val_data`), split by chromosome or cluster, instead."""
    if fraction <= 0:
        return examples, []
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    n_val = max(1, int(len(examples) * fraction))
    val = {i for i in order[:n_val]}
    return [e for i, e in enumerate(examples) if i not in val], [examples[i] for i in sorted(val)]


# --- the model chain -----------------------------------------------------------------------


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


# --- training ----------------------------------------------------------------------------


@dataclass
class RunState:
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0


def _distributed() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
    return rank, world


def epoch_batches(n_examples: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(n_examples, generator=generator).tolist()
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


class Trainer:
    """One training run, from settings to a bundle on disk."""

    def __init__(self, settings: TrainSettings, log: Callable[[str], None] = print) -> None:
        self.settings = settings
        self.log = log
        self.rank, self.world = _distributed()
        self.out = Path(settings.out)
        self.checkpoints = self.out / "checkpoints"
        if settings.threads:
            torch.set_num_threads(settings.threads)
        from seqchat.encoders import resolve_device

        self.device = resolve_device(settings.device)
        self.base = load_bundle(settings.model, require_weights=False)
        train = load_examples(settings.data, settings.stage)
        if settings.val_data:
            self.train_examples, self.val_examples = train, load_examples(settings.val_data, settings.stage)
        else:
            self.train_examples, self.val_examples = split_validation(
                train, settings.val_fraction, settings.seed
            )
        self.val_examples = self.val_examples[: settings.val_max_examples]
        self.vocabulary = GgufVocabulary.load(self.base.llm_path)
        self.prompt = self._prompt_spec()
        self._layouts: dict[str | None, PromptLayout] = {}
        torch.manual_seed(settings.seed)
        self.chain = self._build_chain().to(self.device)
        self.trainable = [p for p in self.chain.parameters() if p.requires_grad]
        if not self.trainable:
            raise TrainingError("nothing to train")
        self.optimizer = torch.optim.AdamW(self._parameter_groups(), weight_decay=0.0)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.state = RunState()
        self.model: torch.nn.Module = self.chain
        if self.world > 1:
            self.model = torch.nn.parallel.DistributedDataParallel(self.chain)

    # set-up

    def _prompt_spec(self) -> PromptSpec:
        if self.settings.stage == "align":
            return replace(self.base.prompt, user="{sequence}", question="")
        user = self.base.prompt.user
        if "{question}" not in user:
            user = "{sequence}\n{question}"
        question = self.settings.question or self.base.prompt.question or "Describe this sequence."
        return replace(self.base.prompt, user=user, question=question)

    def _build_chain(self) -> SeqchatChain:
        settings, base = self.settings, self.base
        if settings.init_encoder:
            encoder = fresh_encoder(Path(settings.init_encoder), base.encoder.alphabet)
        else:
            encoder = NucleotideEncoder.load(base.encoder, "cpu")
        encoder.requires_grad_(settings.train_encoder)
        projector_config = ProjectorConfig(
            type=settings.projector_type or base.projector.type,
            in_dim=encoder.hidden_size,
            out_dim=base.projector.out_dim,
            pool_stride=settings.pool_stride or base.projector.pool_stride,
            max_soft_tokens=settings.max_soft_tokens or base.projector.max_soft_tokens,
            hidden_dim=base.projector.hidden_dim,
        )
        if settings.stage == "instruct":
            if base.projector_weights is None:
                raise TrainingError(f"{base.root}: instruct starts from a stage-1 bundle with a trained projector")
            projector = load_projector(base.projector, base.projector_weights)
        else:
            projector = build_projector(projector_config)
        projector.requires_grad_(True)
        llm = load_training_llm(base.llm_path)
        if llm.get_input_embeddings().weight.shape[1] != projector.config.out_dim:
            raise TrainingError(
                f"projector out_dim {projector.config.out_dim} does not match the LLM's "
                f"embedding width {llm.get_input_embeddings().weight.shape[1]}"
            )
        if settings.lora_rank:
            if settings.stage != "instruct":
                raise TrainingError("--lora-rank belongs to stage 2 (finetune instruct)")
            from peft import LoraConfig, get_peft_model

            llm = get_peft_model(
                llm,
                LoraConfig(
                    r=settings.lora_rank,
                    lora_alpha=settings.lora_alpha or 2 * settings.lora_rank,
                    target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                    lora_dropout=0.0,
                ),
            )
        return SeqchatChain(encoder, projector, llm)

    def _parameter_groups(self) -> list[dict[str, Any]]:
        encoder = [p for p in self.chain.encoder.parameters() if p.requires_grad]
        other = [p for n, p in self.chain.named_parameters() if p.requires_grad and not n.startswith("encoder.")]
        groups = [{"params": other, "lr": self.settings.lr}]
        if encoder:
            groups.append({"params": encoder, "lr": self.settings.encoder_lr or self.settings.lr})
        return groups

    def _lr_factor(self, step: int) -> float:
        warmup = max(1, self.settings.warmup_steps)
        if step < warmup:
            return (step + 1) / warmup
        total = self.total_steps
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    @property
    def total_steps(self) -> int:
        per_epoch = math.ceil(len(self.train_examples) / (self.settings.batch_size * self.world))
        steps = per_epoch * self.settings.epochs
        return min(steps, self.settings.max_steps) if self.settings.max_steps else steps

    def layout(self, question: str | None) -> PromptLayout:
        if question not in self._layouts:
            self._layouts[question] = layout_for(self.vocabulary, self.prompt, question)
        return self._layouts[question]

    def target_ids(self, answer: str) -> list[int]:
        ids = self.vocabulary.tokenize(answer, False)[: self.settings.max_target_tokens - 1]
        return ids + [self.vocabulary.eos_id]

    def _batch_inputs(self, examples: Sequence[Example]) -> tuple[list[str], list[PromptLayout], list[list[int]]]:
        return (
            [e.sequence for e in examples],
            [self.layout(e.question) for e in examples],
            [self.target_ids(e.answer) for e in examples],
        )

    # the loop

    def run(self) -> Path:
        if self.settings.resume:
            self._load_checkpoint()
        elif self.checkpoints.exists() or (self.out / CONFIG_NAME).exists():
            raise TrainingError(f"{self.out}: already holds a run or a bundle; pass --resume or choose a new --out")
        if self.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)
        batch_size = self.settings.batch_size * self.world
        total = self.total_steps
        started = time.monotonic()
        first_step = self.state.step
        while self.state.step < total:
            batches = epoch_batches(len(self.train_examples), batch_size, self.settings.seed, self.state.epoch)
            while self.state.batch_in_epoch < len(batches) and self.state.step < total:
                batch = batches[self.state.batch_in_epoch]
                if len(batch) < self.world:  # a short last batch: every process needs one
                    batch = [batch[i % len(batch)] for i in range(self.world)]
                indices = batch[self.rank :: self.world]
                loss = self._train_step([self.train_examples[i] for i in indices])
                self.state.batch_in_epoch += 1
                self.state.step += 1
                rate = (self.state.step - first_step) / max(time.monotonic() - started, 1e-9)
                record: dict[str, Any] = {"step": self.state.step, "train_loss": loss, "lr": self.scheduler.get_last_lr()[0], "steps_per_s": rate}
                if self.val_examples and (self.state.step % self.settings.val_every == 0 or self.state.step == total):
                    record["val_loss"] = self.validation_loss()
                if self.rank == 0:
                    self._log_metrics(record, total)
                if self.state.step % self.settings.checkpoint_every == 0 and self.state.step < total:
                    self._save_checkpoint()
            if self.state.batch_in_epoch >= len(batches):
                self.state.epoch += 1
                self.state.batch_in_epoch = 0
        if self.rank == 0:
            self.write_bundle()
            shutil.rmtree(self.checkpoints, ignore_errors=True)
            self._plot()
        if self.world > 1:
            torch.distributed.barrier()
        return self.out

    def _autocast(self) -> Any:
        """bf16 (or fp16 where bf16 is missing) autocast on a GPU; full precision on the CPU."""
        if self.device.type != "cuda":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)

    def _train_step(self, examples: Sequence[Example]) -> float:
        self.model.train()
        self.chain.llm.eval()
        if not self.settings.train_encoder:
            self.chain.encoder.eval()
        with self._autocast():
            loss = self.model(*self._batch_inputs(examples))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.trainable, 1.0)
        self.optimizer.step()
        self.scheduler.step()
        value = loss.detach()
        if self.world > 1:
            torch.distributed.all_reduce(value)
            value /= self.world
        return float(value)

    @torch.no_grad()
    def validation_loss(self) -> float:
        self.chain.eval()
        total, count = 0.0, 0
        size = self.settings.batch_size
        for start in range(0, len(self.val_examples), size):
            batch = self.val_examples[start : start + size]
            with self._autocast():
                total += float(self.chain(*self._batch_inputs(batch))) * len(batch)
            count += len(batch)
        return total / max(count, 1)

    def _log_metrics(self, record: dict[str, Any], total: int) -> None:
        with (self.out / "metrics.jsonl").open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        eta = (total - record["step"]) / max(record["steps_per_s"], 1e-9)
        val = f" val {record['val_loss']:.4f}" if "val_loss" in record else ""
        self.log(
            f"step {record['step']}/{total} loss {record['train_loss']:.4f}{val} "
            f"{record['steps_per_s']:.2f} steps/s eta {eta:.0f}s"
        )

    # checkpoints

    def _trainable_state(self) -> dict[str, torch.Tensor]:
        names = {n for n, p in self.chain.named_parameters() if p.requires_grad}
        return {n: t.detach().cpu().contiguous() for n, t in self.chain.state_dict().items() if n in names}

    def _save_checkpoint(self) -> None:
        if self.rank != 0:
            return
        staging = self.checkpoints / f".step-{self.state.step}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        save_file(self._trainable_state(), str(staging / "trainable.safetensors"))
        torch.save(
            {
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "torch_rng": torch.get_rng_state(),
            },
            staging / "optimizer.pt",
        )
        (staging / "state.json").write_text(
            json.dumps({"run": asdict(self.state), "settings": asdict(self.settings)})
        )
        latest = self.checkpoints / "latest"
        previous = self.checkpoints / ".previous"
        shutil.rmtree(previous, ignore_errors=True)
        if latest.exists():
            latest.rename(previous)
        staging.rename(latest)
        shutil.rmtree(previous, ignore_errors=True)

    def _load_checkpoint(self) -> None:
        latest = self.checkpoints / "latest"
        if not latest.exists():
            self.log(f"no checkpoint in {self.checkpoints}; starting from the beginning")
            return
        state = load_file(str(latest / "trainable.safetensors"))
        missing = self.chain.load_state_dict(state, strict=False)
        if missing.unexpected_keys:
            raise TrainingError(f"{latest}: checkpoint does not match this model")
        extra = torch.load(latest / "optimizer.pt", weights_only=True)
        self.optimizer.load_state_dict(extra["optimizer"])
        self.scheduler.load_state_dict(extra["scheduler"])
        torch.set_rng_state(extra["torch_rng"])
        saved = json.loads((latest / "state.json").read_text())
        self.state = RunState(**saved["run"])
        metrics = self.out / "metrics.jsonl"
        if self.rank == 0 and metrics.exists():  # steps after the checkpoint are run again
            kept = [line for line in metrics.read_text().splitlines()
                    if line and json.loads(line)["step"] <= self.state.step]
            metrics.write_text("".join(line + "\n" for line in kept))
        self.log(f"resumed from step {self.state.step}")

    # output

    def write_bundle(self) -> None:
        """Weights first, `seqchat.yaml` last (renamed into place): a directory without it is
        not a bundle, so a crash never leaves one half-written."""
        base, out = self.base, self.out
        config = json.loads(json.dumps(base.config))
        config["name"] = out.name
        config.pop("compiled", None)  # graphs of the base's weights; compile the new ones
        encoder_dir = out / "encoder"
        if self.settings.train_encoder or self.settings.init_encoder or base.encoder_dir is not None:
            shutil.rmtree(encoder_dir, ignore_errors=True)
            self.chain.encoder.save_pretrained(encoder_dir)
            config["encoder"] = {
                "path": "encoder",
                "kind": "multimolecule" if self.settings.init_encoder else base.encoder.kind,
                "alphabet": base.encoder.alphabet,
                "window": self.chain.encoder.window,
                "batch_size": base.encoder.batch_size,
            }
        save_projector(self.chain.projector, out / "projector.safetensors")
        config["projector"] = {**self.chain.projector.config.as_dict(), "weights": "projector.safetensors"}
        llm = dict(config["llm"])
        if "gguf" in llm:
            shutil.copy(base.llm_source or base.llm_path, out / "llm.gguf")
            llm["gguf"] = "llm.gguf"
        llm.pop("lora", None)
        if self.settings.lora_rank:
            from seqchat.lora import export_lora_gguf

            export_lora_gguf(self.chain.llm, base.llm_path, out / "lora.gguf")
            llm["lora"] = "lora.gguf"
        config["llm"] = llm
        config["prompt"] = {
            "user": self.prompt.user,
            "question": self.prompt.question,
            **({"system": self.prompt.system} if self.prompt.system else {}),
        }
        config["training"] = {
            "stage": self.settings.stage,
            "steps": self.state.step,
            "examples": len(self.train_examples),
            "base": str(base.root),
        }
        staging = out / f".{CONFIG_NAME}.partial"
        staging.write_text(yaml.safe_dump(config, sort_keys=False))
        staging.rename(out / CONFIG_NAME)

    def _plot(self) -> None:
        metrics = self.out / "metrics.jsonl"
        if not metrics.exists():
            return
        try:
            import matplotlib
        except ImportError:
            self.log("matplotlib is not installed: no loss.png")
            return
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        rows = [json.loads(line) for line in metrics.read_text().splitlines() if line]
        figure, axis = plt.subplots(figsize=(6, 4))
        axis.plot([r["step"] for r in rows], [r["train_loss"] for r in rows], label="train")
        val = [r for r in rows if "val_loss" in r]
        if val:
            axis.plot([r["step"] for r in val], [r["val_loss"] for r in val], "o-", label="validation")
        axis.set_xlabel("step")
        axis.set_ylabel("loss")
        axis.set_title(f"seqchat finetune {self.settings.stage}")
        axis.legend()
        figure.tight_layout()
        figure.savefig(self.out / "loss.png", dpi=100)
        plt.close(figure)


def train(settings: TrainSettings, log: Callable[[str], None] = print) -> Path:
    return Trainer(settings, log).run()


def chain_from_bundle(bundle: Bundle) -> tuple[SeqchatChain, GgufVocabulary]:
    """The PyTorch twin of a served bundle (parity checks and the PyTorch benchmark)."""
    if bundle.projector_weights is None:
        raise TrainingError(f"{bundle.root}: no projector weights")
    encoder = NucleotideEncoder.load(bundle.encoder, "cpu")
    projector = load_projector(bundle.projector, bundle.projector_weights)
    llm = load_training_llm(bundle.llm_path)
    if bundle.lora_path is not None:
        from seqchat.lora import merge_lora_gguf

        # merged into the weights: W + (alpha / r) B A, what llama.cpp computes at scale 1
        merge_lora_gguf(llm, bundle.lora_path, bundle.llm_path)
    return SeqchatChain(encoder, projector, llm).eval(), GgufVocabulary.load(bundle.llm_path)
