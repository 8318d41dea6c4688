"""seqchat in pipelines: sharding, the Snakemake workflow (run for real), the Nextflow module
(its command line run without Nextflow, which cannot run here) and pipeline etiquette."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from conftest import invoke, make_records, seqchat_executable, write_fasta
from seqchat import __version__
from seqchat.io.tables import read_table

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SNAKEMAKE = EXAMPLES / "snakemake"
NEXTFLOW = EXAMPLES / "nextflow"
MODULE = NEXTFLOW / "modules" / "local" / "seqchat" / "annotate"


def load_merge_shards():
    spec = importlib.util.spec_from_file_location("merge_shards", SNAKEMAKE / "scripts" / "merge_shards.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tool_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a pipeline job: this venv's tools first on PATH, one thread,
    and every place a tool may write to inside tmp_path."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(
        OMP_NUM_THREADS="1",
        SEQCHAT_HOME=str(tmp_path / "seqchat_home"),
        XDG_CACHE_HOME=str(tmp_path / "cache"),
        MPLCONFIGDIR=str(tmp_path / "matplotlib"),
    )
    return env


@pytest.fixture(scope="module")
def records() -> list[tuple[str, str]]:
    return make_records(10, seed=5, lengths=[30, 7, 66, 12, 90, 41, 5, 64, 23, 18])


@pytest.fixture(scope="module")
def fasta(tmp_path_factory: pytest.TempPathFactory, records) -> Path:
    return write_fasta(tmp_path_factory.mktemp("pipeline") / "input.fa", records)


def annotate(bundle: Path, fasta: Path, output: Path, *extra: str) -> list[dict]:
    """In-process `seqchat annotate`, its provenance recording this command line."""
    args = ["annotate", str(fasta), "-m", str(bundle), "-o", str(output), "-q", "-t", "1", *extra]
    saved = sys.argv
    sys.argv = ["seqchat", *args]
    try:
        result = invoke(args)
    finally:
        sys.argv = saved
    assert result.exit_code == 0, (result.stderr, result.exception)
    return read_table(output)[1]


@pytest.fixture(scope="module")
def unsharded(tiny_bundle: Path, fasta: Path, tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    return annotate(tiny_bundle, fasta, tmp_path_factory.mktemp("unsharded") / "all.tsv")


@pytest.fixture(scope="module")
def shard_tables(tiny_bundle: Path, fasta: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    directory = tmp_path_factory.mktemp("shards")
    tables = []
    for index in range(3):
        output = directory / f"shard{index}.tsv"
        annotate(tiny_bundle, fasta, output, "--shard", f"{index}/3")
        tables.append(output)
    return tables


# --- sharding ------------------------------------------------------------------------------


def test_shards_put_back_in_input_order_equal_the_unsharded_rows(shard_tables, unsharded, records):
    order = {identifier: index for index, (identifier, _sequence) in enumerate(records)}
    rows = []
    for index, table in enumerate(shard_tables):
        shard_rows = read_table(table)[1]
        assert [order[row["id"]] for row in shard_rows] == list(range(index, len(records), 3))
        rows += shard_rows
    rows.sort(key=lambda row: order[row["id"]])
    assert rows == unsharded


def test_merge_shards_restores_input_order_whatever_order_the_shards_come_in(shard_tables, unsharded, fasta, tmp_path):
    merge = load_merge_shards()
    shuffled = [shard_tables[2], shard_tables[0], shard_tables[1]]
    assert merge.merge_shards([str(p) for p in shuffled], [str(fasta)], str(tmp_path / "merged.tsv")) == 10
    provenance, rows = read_table(tmp_path / "merged.tsv")
    assert rows == unsharded
    assert provenance["shards"] == "3" and "--shard I/3" in provenance["command"]
    text = (tmp_path / "merged.tsv").read_text()
    assert text.count("# seqchat: ") == 1 and text.count("id\tlength\t") == 1
    # JSON Lines out, from the same shards
    merge.merge_shards([str(p) for p in shard_tables], [str(fasta)], str(tmp_path / "merged.jsonl"))
    assert [row["id"] for row in read_table(tmp_path / "merged.jsonl")[1]] == [row["id"] for row in unsharded]


def test_merge_shards_refuses_shards_that_do_not_make_up_the_input(shard_tables, fasta, tmp_path, records):
    merge = load_merge_shards()
    script = SNAKEMAKE / "scripts" / "merge_shards.py"
    out = tmp_path / "merged.tsv"

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=120)

    missing = run("--fasta", str(fasta), "-o", str(out), str(shard_tables[0]), str(shard_tables[2]))
    assert missing.returncode == 1 and "not one of 2 shards" in missing.stderr and not out.exists()
    other = write_fasta(tmp_path / "other.fa", records[:9])
    extra = run("--fasta", str(other), "-o", str(out), *map(str, shard_tables))
    assert extra.returncode == 1 and "beyond the input" in extra.stderr
    assert run("-o", str(out)).returncode == 2
    edited = tmp_path / "edited.tsv"
    edited.write_text(shard_tables[1].read_text().replace("# decoding: max_new_tokens=12", "# decoding: max_new_tokens=13"))
    with pytest.raises(merge.MergeError, match="other settings"):
        merge.merge_shards([str(shard_tables[0]), str(edited), str(shard_tables[2])], [str(fasta)], str(out))


# --- Snakemake -------------------------------------------------------------------------------


def test_the_snakemake_workflow_gives_the_unsharded_rows(tiny_bundle, fasta, unsharded, tmp_path):
    pytest.importorskip("snakemake")
    work = tmp_path / "work"
    command = [
        sys.executable, "-m", "snakemake", "-s", str(SNAKEMAKE / "Snakefile"), "--cores", "1",
        "--directory", str(work), "--config", f"bundle={tiny_bundle}", f"fasta={fasta}", "shards=3", "threads=1",
    ]
    dry = subprocess.run([*command, "--dry-run"], capture_output=True, text=True, env=tool_env(tmp_path), timeout=300)
    assert dry.returncode == 0, dry.stderr
    assert re.search(r"annotate_shard\s+3", dry.stdout + dry.stderr)
    result = subprocess.run(command, capture_output=True, text=True, env=tool_env(tmp_path), timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    merged = work / "results" / "input.annotations.tsv"
    provenance, rows = read_table(merged)
    assert rows == unsharded
    assert merged.read_text().count("# seqchat: ") == 1 and provenance["shards"] == "3"
    for index in range(3):
        shard = read_table(work / "results" / "shards" / f"input.{index}-of-3.tsv")[0]
        assert f"--shard {index}/3" in shard["command"] and "--threads 1" in shard["command"]
    assert not (tmp_path / "seqchat_home").exists()


def test_the_snakemake_wrapper_is_laid_out_like_snakemake_wrappers():
    wrapper = SNAKEMAKE / "wrapper"
    meta = yaml.safe_load((wrapper / "meta.yaml").read_text())
    assert {"name", "description", "authors", "input", "output", "params", "notes"} <= set(meta)
    environment = yaml.safe_load((wrapper / "environment.yaml").read_text())
    assert "conda-forge" in environment["channels"]
    source = (wrapper / "wrapper.py").read_text()
    assert "from snakemake.shell import shell" in source and "snakemake.threads" in source
    compile(source, "wrapper.py", "exec")


@pytest.mark.parametrize(
    "environment_file",
    [SNAKEMAKE / "wrapper" / "environment.yaml", MODULE / "environment.yml"],
    ids=["snakemake", "nextflow"],
)
def test_pipeline_environments_install_seqchat_from_a_built_wheel(environment_file):
    """seqchat is not on the package index: the environments take it from the wheel folder
    that SEQCHAT_WHEELS names (pip expands the variable), in the slim install (no torch)."""
    environment = yaml.safe_load(environment_file.read_text())
    assert environment["channels"][:2] == ["conda-forge", "bioconda"]
    pip = next(entry["pip"] for entry in environment["dependencies"] if isinstance(entry, dict))
    assert all(isinstance(line, str) for line in pip)
    assert "--find-links ${SEQCHAT_WHEELS}" in pip
    assert any(line.replace(" ", "") == f"seqchat=={__version__}" for line in pip)
    assert not any("torch" in line or "download.pytorch.org" in line for line in pip)


def test_every_snakemake_rule_that_runs_seqchat_declares_its_environment():
    source = (SNAKEMAKE / "Snakefile").read_text()
    merge = source[source.index("rule merge_shards:"):]
    assert 'conda:\n        "wrapper/environment.yaml"' in merge.split("\nrule ")[0]


# --- Nextflow (the module's command lines, run without Nextflow) -----------------------------


def groovy_block(source: str, label: str) -> str:
    """The triple-quoted script string after `label:` in a process."""
    match = re.search(rf"^\s*{label}:\n(.*?)\"\"\"\n(.*?)\"\"\"", source, re.S | re.M)
    assert match, f"no {label}: block"
    return match.group(2)


def render_gstring(template: str, values: dict[str, str]) -> str:
    """What Nextflow makes of a script string: `${expr}` interpolated, `\\\\` and `\\$`
    unescaped, the common indentation removed."""
    out, i = [], 0
    while i < len(template):
        char = template[i]
        if char == "\\" and i + 1 < len(template):
            out.append(template[i + 1])
            i += 2
        elif template.startswith("${", i):
            end = template.index("}", i)
            out.append(values[template[i + 2 : end]])
            i = end + 1
        else:
            out.append(char)
            i += 1
    return textwrap.dedent("".join(out))


def run_module_block(label: str, bundle: Path, fasta: Path, workdir: Path, args: str, tmp_path: Path) -> Path:
    source = (MODULE / "main.nf").read_text()
    script = render_gstring(groovy_block(source, label), {
        "model": f"--model {bundle}", "args": args, "task.cpus": "1", "prefix": "sample",
        "fasta": str(fasta), "task.process": "SEQCHAT_ANNOTATE",
    })
    workdir.mkdir()
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=workdir, capture_output=True,
                            text=True, env=tool_env(tmp_path), timeout=300)
    assert result.returncode == 0, (script, result.stderr)
    return workdir


def test_the_nextflow_module_script_annotates_and_reports_its_version(tiny_bundle, fasta, shard_tables, tmp_path):
    workdir = run_module_block("script", tiny_bundle, fasta, tmp_path / "task", "--shard 1/3", tmp_path)
    assert sorted(p.name for p in workdir.iterdir()) == ["sample.tsv", "versions.yml"]
    assert read_table(workdir / "sample.tsv")[1] == read_table(shard_tables[1])[1]
    assert yaml.safe_load((workdir / "versions.yml").read_text()) == {"SEQCHAT_ANNOTATE": {"seqchat": __version__}}

    stub = run_module_block("stub", tiny_bundle, fasta, tmp_path / "stub", "", tmp_path)
    assert (stub / "sample.tsv").read_text().startswith("id\tlength\tdescription")
    assert yaml.safe_load((stub / "versions.yml").read_text()) == {"SEQCHAT_ANNOTATE": {"seqchat": __version__}}


def test_the_nextflow_module_follows_the_nf_core_layout():
    source = (MODULE / "main.nf").read_text()
    for needle in ("tuple val(meta), path(fasta)", "task.ext.args", "task.ext.prefix", "--threads ${task.cpus}",
                   'path "versions.yml"', "emit: versions", "stub:", "task.ext.when", 'conda "${moduleDir}/environment.yml"'):
        assert needle in source, needle
    meta = yaml.safe_load((MODULE / "meta.yml").read_text())
    assert meta["name"] == "seqchat_annotate"
    assert {"annotations", "versions"} == set(meta["output"])
    assert [next(iter(entry)) for entry in meta["input"][0]] == ["meta", "fasta"]
    yaml.safe_load((MODULE / "environment.yml").read_text())
    pipeline = (NEXTFLOW / "main.nf").read_text()
    assert "include { SEQCHAT_ANNOTATE } from './modules/local/seqchat/annotate/main'" in pipeline
    assert os.access(NEXTFLOW / "bin" / "merge_shards.py", os.X_OK)


# --- etiquette ------------------------------------------------------------------------------


def test_annotate_asks_nothing_and_writes_only_its_output(tiny_bundle, fasta, tmp_path):
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    env = tool_env(tmp_path)
    env["HOME"] = str(home)
    del env["MPLCONFIGDIR"], env["XDG_CACHE_HOME"]  # seqchat must keep matplotlib's cache home
    result = subprocess.run([seqchat_executable(), "annotate", str(fasta), "-m", str(tiny_bundle), "-t", "1", "-o", "out.tsv"],
                            cwd=work, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and result.stderr == ""  # no progress bar off a terminal, no questions
    assert [p.name for p in work.iterdir()] == ["out.tsv"]
    assert list(home.iterdir()) == []
    assert [p.name for p in (tmp_path / "seqchat_home").iterdir()] == ["cache"]
    usage = subprocess.run([seqchat_executable(), "annotate", str(fasta), "--shard", "3/3"], cwd=work, env=env,
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert usage.returncode == 2
