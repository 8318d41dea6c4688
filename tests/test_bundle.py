"""Bundles: lookup by name under $SEQCHAT_HOME, `seqchat models`, path checks."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import assert_clean_failure, invoke
from seqchat.bundle import BundleError, find_bundle, list_bundles, load_bundle


@pytest.fixture
def home(tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """$SEQCHAT_HOME with the tiny bundle installed as `mini`."""
    home = tmp_path / "home"
    shutil.copytree(tiny_bundle, home / "bundles" / "mini")
    (home / "bundles" / "not-a-bundle").mkdir()  # no seqchat.yaml: ignored
    monkeypatch.setenv("SEQCHAT_HOME", str(home))
    return home


def edited_bundle(bundle_copy, edit) -> Path:
    bundle = bundle_copy()
    config = yaml.safe_load((bundle / "seqchat.yaml").read_text())
    edit(config)
    (bundle / "seqchat.yaml").write_text(yaml.safe_dump(config))
    return bundle


def test_bundle_is_found_by_name_under_seqchat_home(home: Path) -> None:
    directory = home / "bundles" / "mini"
    assert find_bundle("mini") == directory
    bundle = load_bundle("mini")
    assert bundle.root == directory
    assert bundle.llm_path == (directory / "llm.gguf").resolve()
    assert bundle.projector_weights == (directory / "projector.safetensors").resolve()
    assert bundle.encoder.source == str((directory / "encoder").resolve())
    assert bundle.encoder.kind == "multimolecule" and bundle.encoder.alphabet == "rna"
    assert bundle.projector.max_soft_tokens == 16 and bundle.projector.pool_stride == 4
    assert bundle.n_ctx_per_slot == 256
    assert bundle.decoding.max_new_tokens == 12 and bundle.decoding.temperature == 0.0
    assert ("mini", directory, "user") in list_bundles()
    assert all(name != "not-a-bundle" for name, _, _ in list_bundles())


def test_a_path_wins_over_a_name(home: Path, tiny_bundle: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    shutil.copytree(tiny_bundle, tmp_path / "mini")
    assert find_bundle("mini") == Path("mini")
    assert find_bundle(str(tiny_bundle)) == tiny_bundle


def test_unknown_name_and_non_bundle_directory(home: Path, tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="'nothing' not found.*seqchat models"):
        find_bundle("nothing")
    with pytest.raises(BundleError, match="not a seqchat bundle"):
        find_bundle(str(home / "bundles" / "not-a-bundle"))


def test_models_lists_the_user_bundle(home: Path) -> None:
    result = invoke(["models"])
    assert result.exit_code == 0, result.stderr
    assert f"mini\tuser\t{home / 'bundles' / 'mini'}" in result.stdout.splitlines()
    assert "not-a-bundle" not in result.stdout


def test_models_with_no_bundles_says_where_they_go(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SEQCHAT_HOME", str(tmp_path / "empty-home"))
    import seqchat.bundle

    monkeypatch.setattr(seqchat.bundle, "shipped_bundles_dir", lambda: tmp_path / "none")
    result = invoke(["models"])
    assert result.exit_code == 0
    assert result.stdout == f"no bundles found (user bundles go in {tmp_path / 'empty-home' / 'bundles'})\n"


def test_models_info_prints_the_sha256_of_every_file(home: Path) -> None:
    result = invoke(["models", "info", "mini"])
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    directory = home / "bundles" / "mini"
    assert lines[0] == f"# tiny: {directory}"
    header = next(i for i, line in enumerate(lines) if line.startswith("# sha256"))
    digests = dict(reversed(line.split("  ", 1)) for line in lines[header + 1 :])
    expected = [directory / "llm.gguf", directory / "projector.safetensors",
                *(directory / "encoder").iterdir()]
    assert set(digests) == {str(path.resolve()) for path in expected}
    for path in expected:
        assert digests[str(path.resolve())] == hashlib.sha256(path.read_bytes()).hexdigest(), path
    # The config itself is printed as YAML between the two headers.
    config = yaml.safe_load("\n".join(lines[1:header]))
    assert config["llm"]["gguf"] == "llm.gguf"


def test_models_info_sha256sums_are_checked_by_sha256sum(home: Path, tmp_path: Path) -> None:
    result = invoke(["models", "info", "mini", "--sha256sums"])
    assert result.exit_code == 0, result.stderr
    sums = tmp_path / "SHA256SUMS"
    sums.write_text(result.stdout)
    checked = subprocess.run(["sha256sum", "-c", str(sums)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.count(": OK") == len(result.stdout.splitlines()) >= 3
    (home / "bundles" / "mini" / "projector.safetensors").write_bytes(b"changed")
    assert subprocess.run(["sha256sum", "-c", str(sums)], capture_output=True).returncode != 0


def test_models_info_of_an_unknown_bundle(home: Path) -> None:
    result = invoke(["models", "info", "nothing"])
    assert_clean_failure(result.exit_code, result.stderr, "'nothing'", "not found")


def test_sha256s_change_with_the_weights(bundle_copy) -> None:
    bundle = bundle_copy()
    before = load_bundle(str(bundle)).sha256s()
    with open(bundle / "projector.safetensors", "ab") as handle:
        handle.write(b"\0")
    after = load_bundle(str(bundle)).sha256s()
    assert {k for k in before if before[k] != after[k]} == {"projector"}


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (lambda c: c["llm"].update(gguf="../x.gguf"), ["llm.gguf", "outside the bundle", "../x.gguf"]),
        (lambda c: c["llm"].update(gguf="/etc/hostname"), ["absolute path", "/etc/hostname"]),
        (lambda c: c["projector"].update(weights="../p.safetensors"), ["projector.weights", "outside"]),
        (lambda c: c["encoder"].update(path="../../encoder"), ["encoder.path", "outside"]),
        (lambda c: c["llm"].update(lora="../lora.gguf"), ["llm.lora", "outside"]),
        (lambda c: c["llm"].update(gguf="missing.gguf"), ["missing.gguf", "does not exist"]),
        (lambda c: c.pop("projector"), ["'projector' is missing"]),
        (lambda c: c["projector"].pop("out_dim"), ["projector needs 'out_dim'"]),
        (lambda c: c["encoder"].update(kind="esm"), ["encoder kind 'esm' is unknown"]),
        (lambda c: c.update(format=2), ["bundle format 2"]),
        (lambda c: c["llm"].pop("gguf"), ["llm needs 'gguf'"]),
    ],
)
def test_bad_bundle_configs(bundle_copy, edit, words) -> None:
    bundle = edited_bundle(bundle_copy, edit)
    with pytest.raises(BundleError) as error:
        load_bundle(str(bundle))
    message = str(error.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_external_paths_when_allowed(bundle_copy, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.gguf"

    def edit(config):
        config["llm"]["gguf"] = "../elsewhere.gguf"

    bundle = edited_bundle(bundle_copy, edit)
    shutil.move(bundle / "llm.gguf", outside)
    assert load_bundle(str(bundle), allow_external_paths=True).llm_path == outside.resolve()


def test_not_yaml(bundle_copy) -> None:
    bundle = bundle_copy()
    (bundle / "seqchat.yaml").write_text("encoder: [unclosed\n")
    with pytest.raises(BundleError, match="not valid YAML"):
        load_bundle(str(bundle))
