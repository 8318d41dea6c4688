"""Loading a bundle's models for the pipeline: its encoder and projector (ONNX graphs on a
CPU when compiled, else PyTorch), its LLM in llama.cpp contexts, its reference set."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Protocol

import numpy as np

from seqchat.bundle import Bundle, BundleError
from seqchat.home import seqchat_home
from seqchat.homology.packed import reference_directory
from seqchat.io.digest import sha256_file
from seqchat.llm.pool import RuntimePool
from seqchat.llm.runtime import GgufRuntime


class SoftTokens(Protocol):
    """Sequences -> soft-token matrices: `seqchat.encode.soft_tokens.SoftTokenizer` (PyTorch) or
    `seqchat.encode.compiled.CompiledSoftTokenizer` (ONNX)."""

    runtime_name: str

    @property
    def device_type(self) -> str: ...

    def use_threads(self, threads: int) -> None: ...

    def __call__(self, sequences: list[str]) -> list[np.ndarray]: ...


def load_models(
    bundle: Bundle, *, device: str, threads: int | None, parallel: int, n_ctx_per_slot: int
) -> tuple[SoftTokens, GgufRuntime]:
    """The bundle's encoder + projector and its LLM in a runtime with `parallel` slots."""
    soft_tokenizer = load_soft_tokenizer(bundle, device)
    if threads:
        soft_tokenizer.use_threads(threads)
    runtime = load_runtime(
        bundle, on_gpu=soft_tokenizer.device_type == "cuda", threads=threads,
        parallel=parallel, n_ctx_per_slot=n_ctx_per_slot,
    )
    return soft_tokenizer, runtime


def load_soft_tokenizer(
    bundle: Bundle, device: str, *, compiled: bool | None = None
) -> SoftTokens:
    """The encoder and projector compiled to ONNX when the bundle has them and the work
    stays on the CPU (`compiled=None`), else PyTorch's. `compiled` forces either."""
    if bundle.projector_weights is None:
        raise BundleError(f"{bundle.root}: the projector has no trained weights")
    if compiled is None:
        compiled = bundle.compiled_encoder is not None and _stays_on_cpu(device)
    if compiled:
        return _load_compiled(bundle)
    from seqchat.encode.encoders import NucleotideEncoder, resolve_device
    from seqchat.encode.projector import load_projector
    from seqchat.encode.soft_tokens import SoftTokenizer

    encoder = NucleotideEncoder.load(bundle.encoder, resolve_device(device))
    projector = load_projector(bundle.projector, bundle.projector_weights)
    return SoftTokenizer(encoder, projector)


def _stays_on_cpu(device: str) -> bool:
    """`auto` means CUDA when there is a GPU; asking torch costs a second of import, so
    look for a GPU driver first."""
    if device == "cpu":
        return True
    if device != "auto":
        return False
    return not any(Path(p).exists() for p in ("/proc/driver/nvidia/version", "/dev/kfd"))


def _load_compiled(bundle: Bundle) -> SoftTokens:
    from seqchat.encode.compiled import CompiledSoftTokenizer

    if bundle.compiled_encoder is None or bundle.compiled_projector is None:
        raise BundleError(f"{bundle.root}: not compiled (run 'seqchat models compile {bundle.root}')")
    soft_tokenizer = CompiledSoftTokenizer(
        bundle.compiled_encoder, bundle.compiled_projector, bundle.projector
    )
    files = bundle.weight_files()
    soft_tokenizer.check_sources(
        {name: sha256_file(files[name]) for name in soft_tokenizer.info.sources if name in files},
        bundle.root,
    )
    soft_tokenizer.check_encoder(bundle.encoder, bundle.root)
    return soft_tokenizer


def bundle_references(bundle: Bundle, threads: int) -> list[Path]:
    """The bundle's reference set as a directory to search (none if it has no reference)."""
    if bundle.reference is None:
        return []
    cache = seqchat_home() / "cache" / "reference"
    return [reference_directory(bundle.reference, cache, name=bundle.name, threads=threads)]


def load_runtime(
    bundle: Bundle, *, on_gpu: bool, threads: int | None, parallel: int, n_ctx_per_slot: int
) -> GgufRuntime:
    return GgufRuntime(
        bundle.llm_path,
        n_parallel=parallel,
        n_ctx_per_slot=n_ctx_per_slot,
        n_threads=threads,
        lora_path=bundle.lora_path,
        lora_scale=bundle.lora_scale,
        n_gpu_layers=-1 if on_gpu else 0,
    )


MAX_CONTEXTS = 8


def load_runtime_pool(
    bundle: Bundle, *, on_gpu: bool, threads: int, parallel: int, n_ctx_per_slot: int
) -> RuntimePool:
    """On a CPU, one llama.cpp context per thread (at most MAX_CONTEXTS, the threads shared
    out among them), the `parallel` slots split among them; on a GPU, one context."""
    n_contexts = 1 if on_gpu else max(1, min(threads, MAX_CONTEXTS, parallel))
    slots = math.ceil(parallel / n_contexts)
    shares = [threads // n_contexts + (i < threads % n_contexts) for i in range(n_contexts)]
    runtimes: list[GgufRuntime] = []
    try:
        for share in shares:
            runtime = load_runtime(
                bundle, on_gpu=on_gpu, threads=share, parallel=slots,
                n_ctx_per_slot=n_ctx_per_slot,
            )
            runtimes.append(runtime)
    except BaseException:
        for runtime in runtimes:
            runtime.close()
        raise
    return RuntimePool(runtimes)
