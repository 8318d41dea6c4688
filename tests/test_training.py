"""Training (seqchat.train and `seqchat finetune`) on tiny random models.

Every run here is a few dozen steps of a 2-layer, 64-wide llama and a 2-layer, 32-wide
RNA-FM on a dozen short sequences, with one torch thread, so each test takes seconds.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file
from tinymodels import write_tiny_bundle

from seqchat.bundle import CONFIG_NAME, load_bundle
from seqchat.llm.prompt import layout_for
from seqchat.llm.runtime import GgufRuntime
from seqchat.llm.vocabulary import GgufVocabulary
from seqchat.train.chain import SeqchatChain, chain_from_bundle, load_training_llm
from seqchat.train.trainer import Trainer, TrainSettings

DESCRIPTIONS = [
    "the ribosomal protein",
    "transfer RNA binding",
    "the membrane kinase",
    "a DNA binding protein",
    "ribosomal RNA subunit",
    "the kinase subunit",
]
QUESTIONS = ["What is this sequence?", "What does it encode?"]

# Fast, deterministic defaults for every in-process run.
FAST = dict(batch_size=4, warmup_steps=2, threads=1, device="cpu", val_fraction=0.0)


def random_sequence(rng: random.Random, alphabet: str = "ACGU") -> str:
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(20, 60)))


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def align_rows(n: int, seed: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [
        {"sequence": random_sequence(rng), "text": DESCRIPTIONS[i % len(DESCRIPTIONS)]}
        for i in range(n)
    ]


def instruct_rows(n: int, seed: int = 1) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [
        {
            "sequence": random_sequence(rng),
            "question": QUESTIONS[i % len(QUESTIONS)],
            "answer": DESCRIPTIONS[(i // 2) % len(DESCRIPTIONS)],
        }
        for i in range(n)
    ]


def metrics(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line]


def run_trainer(log: list[str] | None = None, **options: Any) -> Trainer:
    trainer = Trainer(TrainSettings(**{**FAST, **options}), log=(log.append if log is not None else lambda _: None))
    trainer.run()
    return trainer


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).parent), env.get("PYTHONPATH")]))
    return env


def seqchat_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "seqchat.cli", *args],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=timeout,
    )


# --- fixtures ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("training")


@pytest.fixture(scope="module")
def base_bundle(workdir: Path) -> Path:
    return write_tiny_bundle(workdir / "base")


@pytest.fixture(scope="module")
def data(workdir: Path) -> dict[str, Path]:
    return {
        "align": write_jsonl(workdir / "align.jsonl", align_rows(12)),
        "align_val": write_jsonl(workdir / "align_val.jsonl", align_rows(4, seed=7)),
        "instruct": write_jsonl(workdir / "instruct.jsonl", instruct_rows(12)),
        "instruct_val": write_jsonl(workdir / "instruct_val.jsonl", instruct_rows(4, seed=8)),
    }


@pytest.fixture(scope="module")
def trained(workdir: Path, base_bundle: Path, data: dict[str, Path]) -> dict[str, Trainer]:
    """Stage 1 then stage 2 (LoRA rank 4) from the stage-1 bundle; the trainers stay in
    memory so that the LoRA model can be compared with the runtime."""
    align = run_trainer(
        stage="align", data=[str(data["align"])], val_data=[str(data["align_val"])], val_every=10,
        model=str(base_bundle), out=str(workdir / "align"), epochs=12, lr=1e-2,
    )
    instruct = run_trainer(
        stage="instruct", data=[str(data["instruct"])], model=str(workdir / "align"),
        out=str(workdir / "instruct"), epochs=12, lr=1e-2, lora_rank=4,
    )
    return {"align": align, "instruct": instruct}


# --- 1. loss falls; both stages write bundles --------------------------------------------


@pytest.mark.parametrize("stage", ["align", "instruct"])
def test_loss_falls_and_bundle_is_written(trained: dict[str, Trainer], stage: str) -> None:
    out = trained[stage].out
    rows = metrics(out)
    assert [r["step"] for r in rows] == list(range(1, 37))
    losses = [r["train_loss"] for r in rows]
    first, last = float(np.mean(losses[:5])), float(np.mean(losses[-5:]))
    print(f"{stage}: mean train loss of the first 5 steps {first:.3f}, last 5 {last:.3f}")
    assert last < first - 0.5 and last < 0.9 * first, (first, last)
    if stage == "align":
        val = [r["val_loss"] for r in rows if "val_loss" in r]
        assert len(val) == 4 and val[-1] < val[0]  # steps 10, 20, 30 and the last

    bundle = load_bundle(str(out))
    assert bundle.projector_weights == (out / "projector.safetensors").resolve()
    assert (out / "loss.png").stat().st_size > 0
    assert not (out / "checkpoints").exists()
    assert bundle.config["training"]["stage"] == stage
    assert bundle.config["training"]["steps"] == 36
    if stage == "align":
        assert bundle.lora_path is None
        assert bundle.prompt.user == "{sequence}"
    else:
        assert bundle.lora_path == (out / "lora.gguf").resolve()
        assert "{question}" in bundle.prompt.user
        assert bundle.prompt.question  # a default question for annotating


# --- 2. the trained chain in PyTorch agrees with the GGUF runtime ------------------------


def runtime_tokens(
    runtime: GgufRuntime, chain: SeqchatChain, sequence: str, layout: Any, target: list[int]
) -> list[int]:
    with torch.no_grad():
        soft = chain.soft_tokens([sequence])[0].float().numpy()
    logits = runtime.next_token_logits(layout.prefix_ids, soft, list(layout.suffix_ids) + target[:-1])
    return logits[-len(target):].argmax(axis=-1).tolist()


def parity_examples(stage: str) -> list[tuple[str, str | None, str]]:
    """(sequence, question, answer) of unseen and seen examples."""
    if stage == "align":
        rows = align_rows(4, seed=7) + align_rows(3)
        return [(r["sequence"].replace("U", "T"), None, r["text"]) for r in rows]
    rows = instruct_rows(4, seed=8) + instruct_rows(3)
    return [(r["sequence"].replace("U", "T"), r["question"], r["answer"]) for r in rows]


def agreement(chain: SeqchatChain, bundle_dir: Path, stage: str, lora: bool = True) -> tuple[float, int]:
    bundle = load_bundle(str(bundle_dir))
    vocabulary = GgufVocabulary.load(bundle.llm_path)
    runtime = GgufRuntime(
        bundle.llm_path, lora_path=bundle.lora_path if lora else None, n_parallel=1,
        n_ctx_per_slot=256, n_threads=1,
    )
    chain.eval()
    same = total = 0
    try:
        for sequence, question, answer in parity_examples(stage):
            layout = layout_for(vocabulary, bundle.prompt, question)
            target = vocabulary.tokenize(answer, False) + [vocabulary.eos_id]
            expected = chain.teacher_forced_tokens(sequence, layout, target)
            got = runtime_tokens(runtime, chain, sequence, layout, target)
            assert len(expected) == len(got) == len(target)
            same += sum(a == b for a, b in zip(expected, got))
            total += len(target)
    finally:
        runtime.close()
        vocabulary.close()
    return same / total, total


def test_parity_align_bundle(trained: dict[str, Trainer]) -> None:
    out = trained["align"].out
    chain, vocabulary = chain_from_bundle(load_bundle(str(out)))
    vocabulary.close()
    # the bundle on disk holds the trained weights
    for name, tensor in trained["align"].chain.projector.state_dict().items():
        assert torch.equal(chain.projector.state_dict()[name], tensor)
    rate, total = agreement(chain, out, "align")
    print(f"align parity {rate:.3f} over {total} tokens")
    assert total >= 20 and rate >= 0.95, rate


def test_runtime_loads_the_lora_bundle(trained: dict[str, Trainer]) -> None:
    bundle = load_bundle(str(trained["instruct"].out))
    assert bundle.lora_path is not None
    GgufRuntime(bundle.llm_path, lora_path=bundle.lora_path, n_parallel=1, n_ctx_per_slot=256).close()


@pytest.mark.parametrize("side", ["trainer", "bundle"])
def test_parity_instruct_bundle_with_lora(trained: dict[str, Trainer], side: str) -> None:
    """The runtime with the bundle's lora.gguf agrees with the PyTorch chain: the trainer's
    in-memory one (peft LoRA) and the one chain_from_bundle rebuilds (LoRA merged)."""
    trainer = trained["instruct"]
    lora_b = [p for n, p in trainer.chain.named_parameters() if "lora_B" in n]
    assert lora_b and any(float(p.detach().abs().max()) > 1e-3 for p in lora_b)  # the LoRA trained
    if side == "trainer":
        chain = trainer.chain
    else:
        chain, vocabulary = chain_from_bundle(load_bundle(str(trainer.out)))
        vocabulary.close()
    rate, total = agreement(chain, trainer.out, "instruct")
    assert total >= 20 and rate >= 0.95, rate
    # the comparison can tell: without the adapter the runtime disagrees more
    without, _ = agreement(chain, trainer.out, "instruct", lora=False)
    print(f"instruct parity ({side}) {rate:.3f} over {total} tokens; {without:.3f} without the adapter")
    assert without < rate


def test_chain_from_bundle_applies_lora(trained: dict[str, Trainer]) -> None:
    trainer = trained["instruct"]
    chain, vocabulary = chain_from_bundle(load_bundle(str(trainer.out)))
    sequence, question, answer = parity_examples("instruct")[0]
    layout = trainer.layout(question)
    target = vocabulary.tokenize(answer, False) + [vocabulary.eos_id]
    vocabulary.close()
    trainer.chain.eval()
    with torch.no_grad():
        expected = trainer.chain._logits(trainer.chain.inputs([sequence], [layout], [target])[0])
        got = chain._logits(chain.inputs([sequence], [layout], [target])[0])
    print(f"chain_from_bundle vs trainer: max |logit diff| {float((got - expected).abs().max()):.2e}")
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    # without the merge the logits differ clearly, so the check above can fail
    chain.llm = load_training_llm(load_bundle(str(trainer.out)).llm_path)
    with torch.no_grad():
        unmerged = chain._logits(chain.inputs([sequence], [layout], [target])[0])
    assert float((unmerged - expected).abs().max()) > 1e-2


# --- 3. resume reaches the same weights --------------------------------------------------


class SimulatedCrash(RuntimeError):
    pass


RESUME_VARIANTS = {
    "align": dict(stage="align"),
    "align-train-encoder": dict(stage="align", train_encoder=True, encoder_lr=5e-3),
    "instruct-lora": dict(stage="instruct", lora_rank=4),
}


def tensors(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".gguf":
        import gguf

        return {t.name: torch.from_numpy(np.array(t.data)) for t in gguf.GGUFReader(str(path)).tensors}
    return load_file(str(path))


def assert_same_tensors(a: Path, b: Path) -> None:
    left, right = tensors(a), tensors(b)
    assert left.keys() == right.keys()
    for name in left:
        torch.testing.assert_close(left[name], right[name], atol=1e-6, rtol=0, msg=name)


@pytest.mark.parametrize("variant", list(RESUME_VARIANTS))
def test_resume_reaches_the_same_weights(
    variant: str, tmp_path: Path, base_bundle: Path, data: dict[str, Path],
    trained: dict[str, Trainer], monkeypatch: pytest.MonkeyPatch,
) -> None:
    options = dict(RESUME_VARIANTS[variant])
    stage = options["stage"]
    options.update(
        data=[str(data[stage])], val_data=[str(data[f"{stage}_val"])], val_every=3,
        model=str(base_bundle if stage == "align" else trained["align"].out),
        epochs=3, lr=1e-2, checkpoint_every=2,
    )  # 12 examples, batch 4: 9 steps, checkpoints after steps 2, 4, 6 and 8
    whole = run_trainer(out=str(tmp_path / "whole"), **options)
    assert whole.state.step == 9

    original = Trainer._train_step

    def crashing(self: Trainer, examples: Any) -> float:
        if self.state.step == 5:  # dies in step 6: steps 1-5 done, the last checkpoint after 4
            raise SimulatedCrash
        return original(self, examples)

    out = tmp_path / "resumed"
    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "_train_step", crashing)
        with pytest.raises(SimulatedCrash):
            run_trainer(out=str(out), **options)
    assert (out / "checkpoints" / "latest").is_dir()
    assert not (out / CONFIG_NAME).exists()
    assert json.loads((out / "checkpoints" / "latest" / "state.json").read_text())["run"]["step"] == 4

    log: list[str] = []
    resumed = run_trainer(log=log, out=str(out), resume=True, **options)
    assert "resumed from step 4" in log
    assert resumed.state.step == 9
    load_bundle(str(out))
    assert_same_tensors(tmp_path / "whole" / "projector.safetensors", out / "projector.safetensors")
    if options.get("train_encoder"):
        assert_same_tensors(tmp_path / "whole" / "encoder" / "model.safetensors", out / "encoder" / "model.safetensors")
        # and the encoder did train
        base_encoder = tensors(base_bundle / "encoder" / "model.safetensors")
        trained_encoder = tensors(out / "encoder" / "model.safetensors")
        assert any(not torch.equal(base_encoder[k], trained_encoder[k]) for k in base_encoder)
    if options.get("lora_rank"):
        assert_same_tensors(tmp_path / "whole" / "lora.gguf", out / "lora.gguf")
    # the losses logged match the uninterrupted run, step for step, with no step twice
    expected = [(r["step"], r["train_loss"]) for r in metrics(tmp_path / "whole")]
    got = [(r["step"], r["train_loss"]) for r in metrics(out)]
    assert [s for s, _ in got] == list(range(1, 10))
    np.testing.assert_allclose([l for _, l in got], [l for _, l in expected], rtol=1e-5)


def test_resume_refuses_a_finished_bundle_dir(trained: dict[str, Trainer], data: dict[str, Path], base_bundle: Path) -> None:
    from seqchat.train.examples import TrainingError

    with pytest.raises(TrainingError, match="already holds"):
        run_trainer(stage="align", data=[str(data["align"])], model=str(base_bundle), out=str(trained["align"].out), max_steps=1)


# --- 4. two processes --------------------------------------------------------------------


def test_torchrun_two_processes_write_one_bundle(tmp_path: Path, base_bundle: Path) -> None:
    # 13 examples, 2 per process: the last global batch has a single example
    train_data = write_jsonl(tmp_path / "train.jsonl", align_rows(13, seed=3))
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
    out = tmp_path / "runs" / "ddp"
    result = subprocess.run(
        [
            torchrun, "--standalone", "--nproc_per_node", "2", "-m", "seqchat.cli",
            "finetune", "align", "--data", str(train_data), "-m", str(base_bundle),
            "--out", str(out), "--epochs", "2", "--batch-size", "2", "--val-fraction", "0",
            "--lr", "1e-2", "--warmup-steps", "1", "--checkpoint-every", "2", "--threads", "1",
            "--device", "cpu",
        ],
        capture_output=True, text=True, env=cli_env(), timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "wrote bundle" in result.stderr
    bundles = sorted(p.parent for p in tmp_path.rglob(CONFIG_NAME))
    assert bundles == [out]
    rows = metrics(out)
    assert [r["step"] for r in rows] == list(range(1, 9))  # ceil(13 / 4) = 4 steps an epoch, logged once
    assert not (out / "checkpoints").exists()
    bundle = load_bundle(str(out))
    assert bundle.config["training"]["steps"] == 8


# --- 5. bad data: one line, non-zero exit, before training -------------------------------


BAD_DATA = {
    "missing-field": (
        '{"sequence": "ACGUACGUACGUACGUACGU", "text": "the kinase"}\n{"sequence": "ACGUACGUACGUACGUACGU"}\n',
        ["bad.jsonl:2", "text"],
    ),
    "not-nucleotides": (
        '{"sequence": "ACGUACGUACGUACGUACGU", "text": "the kinase"}\n'
        '{"sequence": "ACGUACGUACGUACGUACGU", "text": "a gene"}\n'
        '{"sequence": "ACGUACXUACGU", "text": "the gene"}\n',
        ["bad.jsonl:3", "'X'", "nucleotide"],
    ),
    "empty-file": ("", ["bad.jsonl", "no training examples"]),
    "bad-json": (
        '{"sequence": "ACGUACGUACGUACGUACGU", "text": "the kinase"}\n{"sequence": "ACGU", "text": \n',
        ["bad.jsonl:2", "not valid JSON"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_DATA))
def test_bad_data_is_one_line_error_before_training(case: str, tmp_path: Path, base_bundle: Path) -> None:
    content, needles = BAD_DATA[case]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(content)
    out = tmp_path / "out"
    result = seqchat_cli(
        "finetune", "align", "--data", str(bad), "-m", str(base_bundle), "--out", str(out),
        "--max-steps", "2", "--threads", "1",
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("seqchat: error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert not out.exists()


def test_bad_instruct_data_and_bad_val_data(tmp_path: Path, trained: dict[str, Trainer], data: dict[str, Path]) -> None:
    """A missing question (instruct) and a bad validation file are reported too."""
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"sequence": "ACGTACGTACGTACGTACGT", "answer": "the kinase"}])
    out = tmp_path / "out"
    result = seqchat_cli(
        "finetune", "instruct", "--data", str(bad), "-m", str(trained["align"].out),
        "--out", str(out), "--lora-rank", "2", "--threads", "1",
    )
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "bad.jsonl:1: missing or empty question" in result.stderr
    assert not out.exists()

    val = tmp_path / "val.jsonl"
    val.write_text('{"sequence": "ACGT ACGT-ACGT", "text": "a gene"}\n')
    result = seqchat_cli(
        "finetune", "align", "--data", str(data["align"]), "--val-data", str(val),
        "-m", str(trained["align"].out), "--out", str(out), "--threads", "1",
    )
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "val.jsonl:1: '-'" in result.stderr
    assert not out.exists()


# --- 6. --config run.yaml, flags override ------------------------------------------------


def test_config_file_sets_options_and_flags_override(tmp_path: Path, base_bundle: Path, data: dict[str, Path]) -> None:
    out = tmp_path / "from-config"
    config = tmp_path / "run.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "model": str(base_bundle),
                "data": [str(data["align"])],
                "out": str(out),
                "max_steps": 3,
                "lr": 0.005,
                "warmup-steps": 1,
                "val_fraction": 0,
                "batch_size": 4,
                "threads": 1,
            }
        )
    )
    result = seqchat_cli("finetune", "align", "--config", str(config), "--max-steps", "2")
    assert result.returncode == 0, result.stderr
    rows = metrics(out)
    assert [r["step"] for r in rows] == [1, 2]
    # lr and warmup from the file: with warmup 1, step 1 runs at the full lr
    assert rows[0]["lr"] == pytest.approx(0.005)
    assert "val_loss" not in rows[-1]  # val_fraction 0 from the file
    assert load_bundle(str(out)).config["training"] == {
        "stage": "align", "steps": 2, "examples": 12, "base": str(base_bundle),
    }


def test_training_a_compiled_bundle_leaves_its_graphs_behind(tmp_path: Path, base_bundle: Path, data) -> None:
    from seqchat.bundle import compile_bundle

    compiled = tmp_path / "compiled-base"
    shutil.copytree(base_bundle, compiled)
    compile_bundle(load_bundle(str(compiled)))
    assert load_bundle(str(compiled)).compiled_encoder is not None
    out = tmp_path / "trained"
    run_trainer(stage="align", data=[str(data["align"])], model=str(compiled), out=str(out), max_steps=1)
    trained = load_bundle(str(out))
    # The graphs are of the base's weights; the trained bundle runs on PyTorch until compiled.
    assert "compiled" not in trained.config
    assert trained.compiled_encoder is None and not (out / "compiled").exists()
