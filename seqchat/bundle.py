"""Model bundles: a directory with `seqchat.yaml` and the weights it names.

A bundle names the encoder (a directory inside the bundle or a hub id), the projector
(type, shapes, safetensors file), the LLM (a GGUF inside the bundle, an absolute path when
allowed, or a file inside an installed Python package; optionally requantized, see
`seqchat.llm.requantize`), an optional GGUF LoRA adapter, the prompt and the decoding defaults.
`--model NAME` is looked up as a path, then under `$SEQCHAT_HOME/bundles/`, then among the
bundles shipped with the package. Reading a bundle checks its config against the schema
(`seqchat.bundle_schema`), then every path it names (`seqchat.bundle_paths`).
"""

from __future__ import annotations

import importlib.resources
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from seqchat.bundle_paths import BundlePaths
from seqchat.bundle_schema import (
    BundleError,
    CompiledSection,
    EncoderSection,
    GenerationSection,
    LlmSection,
    ProjectorSection,
    PromptSection,
    read_config,
    validate_config,
)
from seqchat.encode.specs import EncoderSpec, ProjectorConfig
from seqchat.home import seqchat_home
from seqchat.io.digest import sha256_file
from seqchat.llm.prompt import PromptSpec
from seqchat.llm.requantize import requantized_gguf
from seqchat.llm.runtime import DecodingSettings

CONFIG_NAME = "seqchat.yaml"
DEFAULT_BUNDLE = "default"


def shipped_bundles_dir() -> Path:
    """The installed `seqchat.bundles` package (the repository's `models/`); when seqchat is
    imported from a source checkout that shadows the installed package, `models/` itself."""
    try:
        return Path(str(importlib.resources.files("seqchat.bundles")))
    except ModuleNotFoundError:
        return Path(__file__).resolve().parent.parent / "models"


@dataclass(frozen=True)
class Bundle:
    name: str
    root: Path
    config: dict[str, Any]
    encoder: EncoderSpec
    projector: ProjectorConfig
    projector_weights: Path | None
    llm_path: Path
    lora_path: Path | None
    lora_scale: float
    n_ctx_per_slot: int
    prompt: PromptSpec
    decoding: DecodingSettings
    encoder_dir: Path | None = field(default=None)
    encoder_files: tuple[tuple[str, Path], ...] = field(default=())
    """Every file in `encoder_dir` (name relative to it, resolved path), checked at load."""
    compiled_encoder: Path | None = field(default=None)
    compiled_projector: Path | None = field(default=None)
    llm_source: Path | None = field(default=None)  # the GGUF llm_path was requantized from
    reference: Path | None = field(default=None)
    """The annotated reference set the bundle searches: a directory (`seqchat reference
    build`), or a packed JSONL of annotated sequences indexed at first use."""

    def weight_files(self) -> dict[str, Path]:
        """Every file whose bytes decide the output, by a name relative to the bundle."""
        files = {"llm": self.llm_path}
        if self.projector_weights is not None:
            files["projector"] = self.projector_weights
        if self.lora_path is not None:
            files["lora"] = self.lora_path
        for name, path in self.encoder_files:
            files[f"encoder/{name}"] = path
        for graph in (self.compiled_encoder, self.compiled_projector):
            if graph is not None:
                files[graph.relative_to(self.root.resolve()).as_posix()] = graph
        return files

    def sha256s(self) -> dict[str, str]:
        return {name: sha256_file(path) for name, path in self.weight_files().items()}


def list_bundles() -> list[tuple[str, Path, str]]:
    """(name, directory, where) for every bundle under $SEQCHAT_HOME and shipped."""
    found: list[tuple[str, Path, str]] = []
    for where, base in (("user", seqchat_home() / "bundles"), ("shipped", shipped_bundles_dir())):
        if base.is_dir():
            for directory in sorted(base.iterdir()):
                if (directory / CONFIG_NAME).is_file():
                    found.append((directory.name, directory, where))
    return found


def find_bundle(name_or_path: str) -> Path:
    candidate = Path(name_or_path).expanduser()
    if (candidate / CONFIG_NAME).is_file():
        return candidate
    if candidate.exists():
        raise BundleError(f"{name_or_path}: not a seqchat bundle (no {CONFIG_NAME})")
    for name, directory, _where in list_bundles():
        if name == name_or_path:
            return directory
    raise BundleError(
        f"bundle {name_or_path!r} not found (looked for a directory, then under "
        f"{seqchat_home() / 'bundles'}, then among shipped bundles; see 'seqchat models')"
    )


def _encoder(
    paths: BundlePaths, section: EncoderSection, trust_remote_code: bool
) -> tuple[EncoderSpec, Path | None, tuple[tuple[str, Path], ...]]:
    """The encoder's spec, its directory inside the bundle (None for a hub id) and the files
    in that directory."""
    directory: Path | None = None
    files: tuple[tuple[str, Path], ...] = ()
    if section.path is not None:
        directory, files = paths.directory(section.path, "encoder.path")
        source = str(directory)
    else:
        assert section.hub_id is not None  # the schema asks for one of the two
        paths.check_hub_id(section.hub_id)
        source = section.hub_id
    spec = EncoderSpec(
        source=source,
        kind=section.kind,
        alphabet=section.alphabet,
        window=section.window,
        batch_size=section.batch_size,
        trust_remote_code=trust_remote_code,
    )
    return spec, directory, files


def _llm_path(paths: BundlePaths, llm: LlmSection) -> Path:
    if llm.gguf is not None:
        return paths.file(llm.gguf, "llm.gguf")
    assert llm.package is not None and llm.file is not None  # the schema asks for them
    return paths.package_file(llm.package, llm.file)


def _requantized(source: Path, type_name: str | None) -> Path:
    """`source`, or its copy in the type `llm.requantize` names (made once, then cached)."""
    if type_name is None:
        return source
    return requantized_gguf(source, type_name, seqchat_home() / "cache" / "gguf")


def _projector(section: ProjectorSection) -> ProjectorConfig:
    return ProjectorConfig(
        type=section.type,
        in_dim=section.in_dim,
        out_dim=section.out_dim,
        pool_stride=section.pool_stride,
        max_soft_tokens=section.max_soft_tokens,
        hidden_dim=section.hidden_dim,
    )


def _prompt(section: PromptSection) -> PromptSpec:
    return PromptSpec(
        user=section.user,
        question=section.question,
        system=section.system,
        evidence_tokens=section.evidence_tokens,
    )


def _decoding(section: GenerationSection) -> DecodingSettings:
    return DecodingSettings(
        max_new_tokens=section.max_new_tokens,
        temperature=section.temperature,
        top_p=section.top_p,
        no_repeat_ngram=section.no_repeat_ngram,
    )


def load_bundle(
    name_or_path: str,
    *,
    allow_external_paths: bool = False,
    trust_remote_code: bool = False,
    require_weights: bool = True,
) -> Bundle:
    """Read and check a bundle: its config against the schema, then every path it names.
    `require_weights=False` accepts a base bundle for training whose projector is not
    trained yet."""
    root = find_bundle(name_or_path)
    config_path = root / CONFIG_NAME
    paths = BundlePaths(root, config_path, allow_external_paths)
    paths.file(CONFIG_NAME, "seqchat.yaml")
    raw = read_config(config_path)
    config = validate_config(raw, config_path)
    llm, weights = config.llm, config.projector.weights
    encoder, encoder_dir, encoder_files = _encoder(paths, config.encoder, trust_remote_code)
    llm_source = _llm_path(paths, llm)
    projector_weights = (
        paths.file(weights, "projector.weights") if require_weights or (root / weights).exists() else None
    )
    lora = paths.file(llm.lora, "llm.lora") if llm.lora else None
    reference = paths.file_or_directory(config.reference, "reference") if config.reference else None
    compiled = config.compiled or CompiledSection()
    compiled_encoder = _compiled(paths, compiled.encoder, "encoder")
    compiled_projector = _compiled(paths, compiled.projector, "projector")
    return Bundle(
        name=config.name or root.name,
        root=root,
        config=raw,
        encoder=encoder,
        encoder_dir=encoder_dir,
        encoder_files=encoder_files,
        compiled_encoder=compiled_encoder,
        compiled_projector=compiled_projector,
        projector=_projector(config.projector),
        projector_weights=projector_weights,
        llm_path=_requantized(llm_source, llm.requantize),  # last: every path is checked first
        llm_source=llm_source if llm.requantize else None,
        reference=reference,
        lora_path=lora,
        lora_scale=llm.lora_scale,
        n_ctx_per_slot=llm.n_ctx_per_slot,
        prompt=_prompt(config.prompt or PromptSection()),
        decoding=_decoding(config.generation or GenerationSection()),
    )


def _compiled(paths: BundlePaths, named: str | None, part: str) -> Path | None:
    """A graph from `seqchat models compile`; always inside the bundle."""
    if named is None:
        return None
    return replace(paths, allow_external=False).file(named, f"compiled.{part}")


def resolve_bundle(
    bundle: str | Bundle, *, allow_external_paths: bool = False, trust_remote_code: bool = False
) -> Bundle:
    """A loaded Bundle as it is; a name or path loaded with `load_bundle`."""
    if isinstance(bundle, Bundle):
        return bundle
    return load_bundle(
        bundle, allow_external_paths=allow_external_paths, trust_remote_code=trust_remote_code
    )


def compile_bundle(bundle: Bundle) -> tuple[Path, Path]:
    """Export the bundle's encoder and projector as ONNX graphs next to its weights and name
    them in its `seqchat.yaml` (`seqchat models compile`). Returns the two graph files."""
    from seqchat.encode.compiled import CompiledModelError
    from seqchat.encode.export import (
        ENCODER_FILE,
        PROJECTOR_FILE,
        export_soft_tokenizer,
    )

    if bundle.projector_weights is None:
        raise CompiledModelError(f"{bundle.root}: the projector has no trained weights")
    sources = {
        name: digest for name, digest in bundle.sha256s().items()
        if name == "projector" or name.startswith("encoder/")
    }
    graphs = export_soft_tokenizer(
        bundle.encoder, bundle.projector, bundle.projector_weights, sources, bundle.root
    )
    config_path = bundle.root / CONFIG_NAME
    config = read_config(config_path)
    config["compiled"] = {"encoder": ENCODER_FILE, "projector": PROJECTOR_FILE}
    staging = bundle.root / f".{CONFIG_NAME}.partial"
    staging.write_text(yaml.safe_dump(config, sort_keys=False))
    os.replace(staging, config_path)
    return graphs
