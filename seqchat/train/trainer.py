"""Both training stages, in PyTorch, producing bundles the GGUF runtime serves unchanged.

Stage 1 (`align`): the sequence alone goes in; the loss is on the description tokens; the
projector trains (and the encoder with `train_encoder`). Stage 2 (`instruct`): sequence +
question -> answer, starting from a stage-1 bundle; the projector trains, and with
`lora_rank` a LoRA on the LLM's attention projections, exported as a GGUF adapter.

The LLM is loaded by transformers from the very GGUF file the bundle serves, and the prompt
is laid out by `seqchat.llm.prompt.layout_for` with llama.cpp's tokenizer, as at serving time.
Runs survive: checkpoints hold the trainable weights (safetensors), optimizer, scheduler,
RNG states and data position, so `resume` reaches the same final weights.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors.torch import load_file, save_file

from seqchat.bundle import CONFIG_NAME, load_bundle
from seqchat.encode.encoders import NucleotideEncoder
from seqchat.encode.projector import build_projector, load_projector, save_projector
from seqchat.encode.specs import ProjectorConfig
from seqchat.llm.prompt import PromptLayout, PromptSpec, layout_for
from seqchat.llm.vocabulary import GgufVocabulary
from seqchat.train.chain import (
    SeqchatChain,
    fresh_encoder,
    load_training_llm,
)
from seqchat.train.evidence import with_evidence
from seqchat.train.examples import (
    Example,
    Stage,
    TrainingError,
    load_examples,
    split_validation,
)


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
    reference: str | None = None
    """The training set's own reference set, searched for the evidence of a grounded prompt."""
    threads: int | None = None
    device: str = "auto"


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
        from seqchat.encode.encoders import resolve_device

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
        if self.prompt.grounded:
            self.train_examples, self.val_examples = self._grounded(self.train_examples), self._grounded(self.val_examples)
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

    def _grounded(self, examples: list[Example]) -> list[Example]:
        reference = Path(self.settings.reference) if self.settings.reference else None
        self.log(f"searching the evidence of {len(examples)} examples")
        return with_evidence(
            examples, reference, self.prompt, self.vocabulary.tokenize,
            threads=self.settings.threads or 1,
        )

    def _prompt_spec(self) -> PromptSpec:
        if self.settings.stage == "align":
            user = "{sequence}\n{evidence}" if self.base.prompt.grounded else "{sequence}"
            return replace(self.base.prompt, user=user, question="")
        user = self.base.prompt.user
        if "{question}" not in user:
            user = f"{user}\n{{question}}"
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

    def example_layout(self, example: Example) -> PromptLayout:
        """The example's prompt layout, its evidence in the suffix as serving puts it."""
        layout = self.layout(example.question)
        if example.evidence is None:
            return layout
        return PromptLayout(
            layout.prefix_ids, layout.suffix_for(example.evidence, self.vocabulary.tokenize)
        )

    def _batch_inputs(self, examples: Sequence[Example]) -> tuple[list[str], list[PromptLayout], list[list[int]]]:
        return (
            [e.sequence for e in examples],
            [self.example_layout(e) for e in examples],
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
            from seqchat.llm.lora_gguf import export_lora_gguf

            export_lora_gguf(self.chain.llm, base.llm_path, out / "lora.gguf")
            llm["lora"] = "lora.gguf"
        config["llm"] = llm
        config["prompt"] = {
            "user": self.prompt.user,
            "question": self.prompt.question,
            **({"system": self.prompt.system} if self.prompt.system else {}),
            **({"evidence_tokens": self.prompt.evidence_tokens} if self.prompt.grounded else {}),
        }
        if base.reference is not None:  # the reference served beside the new weights
            copy = shutil.copytree if base.reference.is_dir() else shutil.copy
            copy(base.reference, out / base.reference.name)
            config["reference"] = base.reference.name
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
