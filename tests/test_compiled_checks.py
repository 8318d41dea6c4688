"""What loading a compiled bundle checks: that its graphs are the ones compiled (their
sha256), that their metadata is known and matches the bundle's settings, that what they
compute is finite; and that onnxruntime neither writes under $HOME nor reaches the network."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import NEEDS_TRAIN, assert_clean_failure, invoke, subprocess_env

from seqchat.bundle import CONFIG_NAME, load_bundle
from seqchat.encode.compiled import CHECKSUMS_NAME, checksums_text
from seqchat.loading import load_soft_tokenizer

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def compiled_copy(compiled_bundle: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(compiled_bundle, tmp_path / "bundle"))


def annotate(bundle: Path, fasta: Path, *extra: str):
    return invoke(["annotate", str(fasta), "-m", str(bundle), "-q", "-t", "1", "--device", "cpu",
                   *extra])


def edit_graph(path: Path, edit: Callable[..., None], *, record: bool) -> None:
    """Apply `edit` to the ONNX model in `path`; with `record`, also write its new sha256
    (a tamperer that covers their tracks)."""
    import onnx

    model = onnx.load(str(path))
    edit(model)
    onnx.save(model, str(path))
    if record:
        graphs = sorted(path.parent.glob("*.onnx"))
        (path.parent / CHECKSUMS_NAME).write_text(checksums_text(graphs))


def nan_weights(model) -> None:
    """Every value of the graph's largest floating-point initializer becomes NaN."""
    from onnx import numpy_helper

    floats = [t for t in model.graph.initializer if numpy_helper.to_array(t).dtype.kind == "f"]
    largest = max(floats, key=lambda t: numpy_helper.to_array(t).size)
    values = np.full_like(numpy_helper.to_array(largest), np.nan)
    largest.CopyFrom(numpy_helper.from_array(values, largest.name))


def edit_metadata(change: Callable[[dict], None]) -> Callable[..., None]:
    def edit(model) -> None:
        (entry,) = [p for p in model.metadata_props if p.key == "seqchat"]
        data = json.loads(entry.value)
        change(data)
        entry.value = json.dumps(data)

    return edit


# --- (b) the graphs are the ones compiled -----------------------------------------------


@pytest.mark.parametrize("graph", ["encoder.onnx", "projector.onnx"])
def test_a_graph_changed_after_compiling_is_refused(
    compiled_copy: Path, small_fasta: Path, graph: str
) -> None:
    edit_graph(compiled_copy / "compiled" / graph, nan_weights, record=False)
    result = annotate(compiled_copy, small_fasta)
    assert_clean_failure(result.exit_code, result.stderr, graph, "changed since", "compile")


def test_graphs_without_their_sha256_are_refused(compiled_copy: Path, small_fasta: Path) -> None:
    (compiled_copy / "compiled" / CHECKSUMS_NAME).unlink()
    result = annotate(compiled_copy, small_fasta)
    assert_clean_failure(result.exit_code, result.stderr, CHECKSUMS_NAME, "compile")


def test_the_recorded_sha256_is_what_sha256sum_checks(compiled_bundle: Path) -> None:
    check = subprocess.run(
        ["sha256sum", "--check", "--strict", CHECKSUMS_NAME],
        cwd=compiled_bundle / "compiled", capture_output=True, text=True, check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.split() == ["encoder.onnx:", "OK", "projector.onnx:", "OK"]


def test_compile_refuses_weights_with_nan(bundle_copy) -> None:
    from test_nonfinite import poison_safetensors

    bundle = bundle_copy()
    config_before = (bundle / CONFIG_NAME).read_text()
    poison_safetensors(bundle / "encoder" / "model.safetensors", "embeddings.layer_norm.bias")
    result = invoke(["models", "compile", str(bundle)])
    assert_clean_failure(result.exit_code, result.stderr, "encoder", "NaN or infinity", "unchanged")
    assert (bundle / CONFIG_NAME).read_text() == config_before
    assert list((bundle / "compiled").iterdir()) == []


@NEEDS_TRAIN
def test_nonfinite_tensors_are_found_in_constants_too(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from seqchat.encode.export import nonfinite_tensors

    nan = numpy_helper.from_array(np.array([1.0, np.nan], dtype=np.float32), "c")
    weights = numpy_helper.from_array(np.array([1.0, np.inf], dtype=np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Constant", [], ["c"], value=nan), helper.make_node("Add", ["c", "w"], ["y"])],
        "g", [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])], [weights],
    )
    onnx.save(helper.make_model(graph), str(tmp_path / "g.onnx"))
    assert sorted(nonfinite_tensors(tmp_path / "g.onnx")) == ["c", "w"]


# --- (a) finite soft tokens, even from a graph whose sha256 was rewritten -----------------


@pytest.mark.parametrize("graph", ["encoder.onnx", "projector.onnx"])
def test_nan_from_a_graph_is_refused_not_written(
    compiled_copy: Path, small_fasta: Path, tmp_path: Path, graph: str
) -> None:
    edit_graph(compiled_copy / "compiled" / graph, nan_weights, record=True)
    out = tmp_path / "out.json"
    result = annotate(compiled_copy, small_fasta, "-f", "json", "-o", str(out))
    assert_clean_failure(result.exit_code, result.stderr, graph, "not finite")
    assert not out.exists()


# --- (c) the metadata is known and matches the bundle --------------------------------------


@pytest.mark.parametrize(
    "change, words",
    [
        (lambda data: data.pop("window"), ["lacks window"]),
        (lambda data: data.update(colour="blue"), ["unknown keys colour"]),
        (lambda data: data.update(window="abc"), ["'window'", "positive integer"]),
        (lambda data: data.update(letter_ids={"AC": 3}), ["'letter_ids'"]),
    ],
    ids=["missing", "unknown", "wrong type", "not a letter"],
)
def test_metadata_the_encoder_does_not_know_is_one_line(
    compiled_copy: Path, small_fasta: Path, change: Callable[[dict], None], words: list[str]
) -> None:
    edit_graph(compiled_copy / "compiled" / "encoder.onnx", edit_metadata(change), record=True)
    result = annotate(compiled_copy, small_fasta)
    assert_clean_failure(result.exit_code, result.stderr, "encoder.onnx", *words)


def set_key(bundle: Path, section: str, key: str, value: object) -> None:
    import yaml

    config = yaml.safe_load((bundle / CONFIG_NAME).read_text())
    config[section][key] = value
    (bundle / CONFIG_NAME).write_text(yaml.safe_dump(config, sort_keys=False))


@pytest.mark.parametrize("key, value", [("type", "mlp"), ("in_dim", 48), ("out_dim", 65)])
def test_projector_settings_must_match_the_graph(
    compiled_copy: Path, small_fasta: Path, key: str, value: object
) -> None:
    set_key(compiled_copy, "projector", key, value)
    result = annotate(compiled_copy, small_fasta)
    assert_clean_failure(result.exit_code, result.stderr, "projector.onnx", f"projector.{key}")


@pytest.mark.parametrize("key, value", [("window", 32), ("alphabet", "dna"), ("batch_size", 4)])
def test_encoder_settings_must_match_the_graph(
    compiled_copy: Path, small_fasta: Path, key: str, value: object
) -> None:
    set_key(compiled_copy, "encoder", key, value)
    result = annotate(compiled_copy, small_fasta)
    assert_clean_failure(result.exit_code, result.stderr, "encoder.onnx", f"compiled for encoder.{key} ")


def test_the_graph_records_the_bundles_settings(compiled_bundle: Path) -> None:
    bundle = load_bundle(str(compiled_bundle))
    soft_tokenizer = load_soft_tokenizer(bundle, "cpu", compiled=True)
    soft_tokenizer.check_encoder(bundle.encoder, bundle.root)  # type: ignore[attr-defined]
    assert soft_tokenizer.info.encoder == {  # type: ignore[attr-defined]
        "kind": "multimolecule", "alphabet": "rna", "window": None, "batch_size": 16,
        "path": "encoder",
    }


# --- (e) no network, nothing under $HOME ---------------------------------------------------


def test_a_compiled_run_writes_nothing_under_home(
    compiled_bundle: Path, small_fasta: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    home.chmod(0o555)
    env = {**subprocess_env(), "HOME": str(home)}
    for name in ("XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "ORT_DISABLE_TELEMETRY"):
        env.pop(name, None)
    out = tmp_path / "out.tsv"
    args = ["annotate", str(small_fasta), "-m", str(compiled_bundle), "-o", str(out), "-q",
            "-t", "1", "--device", "cpu"]
    program = (
        "import sys\n"
        "from seqchat.cli import cli\n"
        f"cli.main(args={args!r}, standalone_mode=False)\n"
        "print('onnxruntime' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, env=env, timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == "True"  # the compiled path ran
    assert out.exists()
    assert [str(p.relative_to(home)) for p in home.rglob("*")] == []


def _strace_works() -> bool:
    if shutil.which("strace") is None:
        return False
    traced = subprocess.run(["strace", "-o", os.devnull, "true"], capture_output=True, check=False)
    return traced.returncode == 0


@pytest.mark.skipif(not _strace_works(), reason="needs strace and the right to trace")
def test_onnxruntime_opens_no_network_socket(compiled_bundle: Path, tmp_path: Path) -> None:
    """onnxruntime's telemetry looks up its endpoint about 10 s after it starts."""
    program = (
        "import time\n"
        "from seqchat.bundle import load_bundle\n"
        "from seqchat.loading import load_soft_tokenizer\n"
        f"soft_tokenizer = load_soft_tokenizer(load_bundle({str(compiled_bundle)!r}), 'cpu')\n"
        "soft_tokenizer(['ACGU'])\n"
        "time.sleep(14)\n"
    )
    trace = tmp_path / "trace"
    env = {**subprocess_env(), "HOME": str(tmp_path)}
    env.pop("ORT_DISABLE_TELEMETRY", None)
    result = subprocess.run(
        ["strace", "-f", "-qq", "-e", "trace=socket", "-o", str(trace), sys.executable, "-c", program],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr
    sockets = [line for line in trace.read_text().splitlines() if "AF_UNIX" not in line]
    assert sockets == []
