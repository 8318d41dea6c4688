"""The examples in README.md and docs/*.md, run as a user would run them, so they stay true.

What runs:

- A fenced ```console block. Its lines starting with `$ ` are commands, run one after the
  other with `bash -c` under `set -euo pipefail` in the same directory, so a command can use
  what an earlier one wrote. A command goes on over the next line when its line ends with
  `\\`, and over lines starting with `> ` (bash's continuation prompt, e.g. for a
  here-document). The other lines are the output shown for the command above them. They are
  checked loosely: each shown line must match a line of the command's output (stdout and
  stderr together), in the order shown, where `...` stands for any text and a run of
  spaces for any run of whitespace (a tab-separated table may be shown aligned). Output
  that is not shown is not checked, and a line that is only `...` says that lines were left
  out.
- A fenced ```python block, run as `__main__` (as `python block.py` would) in the test's
  own process, which saves each block seconds of imports; `sys.exit` with a non-zero status
  or an exception fails it.

Nothing else runs: indented blocks and other fences (```sh, ```yaml, ```snakemake, ...) are
for what cannot run here (pip, apt-get, torchrun on GPUs, Nextflow, Llama-3-8B) or is not a
command. There is no skipping: a block that cannot run must not be a console or python block.

Each block runs in a fresh directory that holds a copy of `examples/` and the small inputs
the docs name (see `prepare_workdir`), with `SEQCHAT_HOME`, `MPLCONFIGDIR` and
`XDG_CACHE_HOME` in a temporary directory and one OpenMP thread.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import runpy
import shutil
import subprocess
import sys
import textwrap
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import make_records

ROOT = Path(__file__).resolve().parent.parent
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUNNABLE = ("console", "python")
COMMAND_TIMEOUT = 600  # seconds, for one command or one python block


# --- finding the examples ----------------------------------------------------------------


@dataclass
class Command:
    line: int  # line number in the document, 1-based
    text: str  # the command, continuation lines included, without the `$ ` prompt
    shown: list[str] = field(default_factory=list)  # output lines shown under it


@dataclass
class Block:
    source: str  # the document's file name
    line: int  # line number of the opening fence, 1-based
    kind: str  # console or python
    text: str  # the block's content, dedented

    @property
    def id(self) -> str:
        return f"{self.source}:{self.line}"

    def commands(self) -> list[Command]:
        """The `$ ` commands of a console block, each with its continuation lines and the
        output lines shown below it."""
        commands: list[Command] = []
        continued = False
        for number, line in enumerate(self.text.split("\n"), self.line + 1):
            if continued or (commands and line.startswith("> ")):
                addition = line if continued else line[2:]
                commands[-1].text += "\n" + addition
                continued = line.endswith("\\")
            elif line.startswith("$ "):
                commands.append(Command(number, line[2:]))
                continued = line.endswith("\\")
            elif commands:
                commands[-1].shown.append(line)
            elif line.strip():
                raise ValueError(f"{self.source}:{number}: output shown before any `$ ` command")
        return commands


_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`\s]*)[^`]*$")


def extract_blocks(markdown: str, source: str) -> list[Block]:
    """Every ```console and ```python block of a Markdown text (fences may be indented,
    e.g. inside a list item; the content is dedented by the fence's indentation)."""
    blocks: list[Block] = []
    lines = markdown.split("\n")
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        indent, fence, info = opening["indent"], opening["fence"], opening["info"].lower()
        closing = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
        end = index + 1
        while end < len(lines) and not closing.match(lines[end]):
            end += 1
        if end == len(lines):
            raise ValueError(f"{source}:{index + 1}: code block is never closed")
        if info in RUNNABLE:
            body = [
                line[len(indent):] if line.startswith(indent) else line.lstrip()
                for line in lines[index + 1 : end]
            ]
            blocks.append(Block(source, index + 1, info, "\n".join(body)))
        index = end + 1
    return blocks


def doc_blocks() -> list[Block]:
    blocks: list[Block] = []
    for path in DOC_FILES:
        blocks.extend(extract_blocks(path.read_text(encoding="utf-8"), path.name))
    return blocks


BLOCKS = doc_blocks()


# --- running them ------------------------------------------------------------------------


class ExampleFailed(AssertionError):
    """A doc example did not do what its document says."""


def shown_pattern(shown: str) -> re.Pattern[str]:
    """A shown output line as a pattern for a whole output line: `...` is any text, a run of
    whitespace is any run of whitespace, everything else is literal."""
    parts = re.split(r"(\.\.\.|\s+)", shown.strip())
    regex = "".join(
        ".*" if part == "..." else r"\s+" if part.isspace() else re.escape(part) for part in parts
    )
    return re.compile(regex)


def check_shown(command: Command, output: str) -> None:
    """Every shown line matches an output line, in the order shown."""
    actual = [line.strip() for line in output.split("\n")]
    position = 0
    for shown in command.shown:
        if shown.strip() in ("", "..."):
            continue
        pattern = shown_pattern(shown)
        while position < len(actual) and not pattern.fullmatch(actual[position]):
            position += 1
        if position == len(actual):
            raise ExampleFailed(
                f"line {command.line}: `$ {command.text}`\n"
                f"the shown output line {shown!r} is not in the output (after the lines "
                f"matched before it):\n{_tail(output)}"
            )
        position += 1


def _tail(text: str, lines: int = 60) -> str:
    kept = text.rstrip("\n").split("\n")
    cut = len(kept) > lines
    return "\n".join((["[...]"] if cut else []) + kept[-lines:])


def run_python(block: Block, workdir: Path, env: dict[str, str], scratch: Path) -> None:
    """Run a python block as `__main__` in this process, in `workdir` with `env` (the modules
    this process has imported stay imported: that saves seconds of torch and multimolecule
    imports per block). Its output is kept for the failure message."""
    script = scratch / f"example_{block.line}.py"
    script.write_text(block.text)
    saved_env, saved_cwd, saved_argv = dict(os.environ), os.getcwd(), sys.argv
    torch = sys.modules.get("torch")
    saved_threads = torch.get_num_threads() if torch is not None else None
    output = io.StringIO()
    failure = None
    try:
        os.environ.clear()
        os.environ.update(env)
        os.chdir(workdir)
        sys.argv = [str(script)]
        with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
            runpy.run_path(str(script), run_name="__main__")
    except SystemExit as stop:
        if stop.code not in (None, 0):
            failure = f"exited with status {stop.code}"
    except Exception:
        failure = "raised an exception:\n" + traceback.format_exc(limit=-8)
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        os.chdir(saved_cwd)
        sys.argv = saved_argv
        if torch is not None and saved_threads is not None:
            torch.set_num_threads(saved_threads)  # an example may have set its own
    if failure is not None:
        raise ExampleFailed(
            f"python block at line {block.line} {failure}\n(line N of {script.name} is "
            f"document line {block.line} + N)\n{_tail(output.getvalue())}"
        )


def run_block(block: Block, workdir: Path, env: dict[str, str], scratch: Path) -> None:
    """Run one block in `workdir`; ExampleFailed says which command failed and how."""
    if block.kind == "python":
        run_python(block, workdir, env, scratch)
        return
    commands = block.commands()
    if not commands:
        raise ExampleFailed(f"console block at line {block.line} has no `$ ` command")
    for command in commands:
        result = subprocess.run(
            ["bash", "-c", "set -euo pipefail\n" + command.text], cwd=workdir, env=env,
            timeout=COMMAND_TIMEOUT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        if result.returncode != 0:
            raise ExampleFailed(
                f"line {command.line}: `$ {command.text}` exited with status "
                f"{result.returncode}:\n{_tail(result.stdout)}"
            )
        check_shown(command, result.stdout)


# --- the directory and environment the examples run in ----------------------------------

# Annotations of the seven sequences of examples/genes.fasta, in the formats of the shared
# training data (SGD for yeast genes, Rfam/nRC for RNA families; Rfam texts shortened). The
# sequences are read from examples/genes.fasta.
YEAST = [
    {"id": "YLL064C", "seq_type": "DNA", "feature": "CDS",
     "text": "hypothetical protein; member of the seripauperin multigene family encoded mainly "
             "in subtelomeric regions; identical to Pau6p",
     "product": "seripauperin PAU18", "go_function": "structural constituent of cell wall",
     "go_process": "fungal-type cell wall organization; response to stress",
     "go_component": "fungal-type cell wall", "chrom": "chr12", "gene": "PAU18"},
    {"id": "YLL063C", "seq_type": "DNA", "feature": "CDS",
     "text": "Acetyltransferase; catalyzes trichothecene 3-O-acetylation, suggesting a possible "
             "role in trichothecene biosynthesis",
     "product": "acetyltransferase",
     "go_function": "transferase activity; trichothecene 3-O-acetyltransferase activity",
     "go_process": "mycotoxin catabolic process", "go_component": "", "chrom": "chr12",
     "gene": "AYT1"},
    {"id": "YLL062C", "seq_type": "DNA", "feature": "CDS",
     "text": "S-methylmethionine-homocysteine methyltransferase; functions along with Sam4p in "
             "the conversion of S-adenosylmethionine (AdoMet) to methionine",
     "product": "S-adenosylmethionine-homocysteine S-methyltransferase MHT1",
     "go_function": "S-adenosylmethionine-homocysteine S-methyltransferase activity; "
                    "metal ion binding",
     "go_process": "methionine biosynthetic process; methylation", "go_component": "cytoplasm",
     "chrom": "chr12", "gene": "MHT1"},
    {"id": "tP(UGG)L", "seq_type": "DNA", "feature": "tRNA",
     "text": "Proline tRNA (tRNA-Pro), predicted by tRNAscan-SE analysis",
     "product": "tRNA-Pro", "go_function": "triplet codon-amino acid adaptor activity",
     "go_process": "translational elongation", "go_component": "cytosol", "chrom": "chr12",
     "gene": ""},
]
RFAM = [
    {"id": "RF00005_EU267175_1_55977-55907", "label": "tRNA", "rfam_acc": "RF00005",
     "text": "tRNA. Rfam RNA type: Gene, tRNA. Transfer RNA (tRNA) molecules are approximately "
             "80 nucleotides in length. GO: triplet codon-amino acid adaptor activity."},
    {"id": "RF00174_ACOO02000004_1_182850-183030", "label": "riboswitch", "rfam_acc": "RF00174",
     "text": "Cobalamin riboswitch. Rfam RNA type: Cis-reg, riboswitch. Riboswitches are "
             "metabolite binding domains within certain messenger RNAs that serve as precision "
             "sensors for their corresponding targets. GO: cobalamin binding."},
    {"id": "RF00029_AFRG01002479_1_306-398", "label": "Intron_gpII", "rfam_acc": "RF00029",
     "text": "Group II catalytic intron. Rfam RNA type: Intron. Group II introns are found in "
             "rRNA, tRNA and mRNA of organelles in fungi, plants and protists, and also in mRNA "
             "in bacteria. GO: Group II intron splicing."},
]
# Other annotated sequences (random, from the tests' tiny data): the reference set of the
# baselines in docs/eval.md, which must not hold the sequences being scored.
TRAIN_TEXTS = [
    "transfer RNA for proline",
    "ribosomal protein of the large subunit",
    "membrane transporter of the major facilitator superfamily",
    "ribosomal protein of the large subunit",
]


def fasta_sequences(path: Path) -> dict[str, str]:
    sequences: dict[str, str] = {}
    name = None
    for line in path.read_text().splitlines():
        if line.startswith(">"):
            name = line[1:].split()[0]
            sequences[name] = ""
        elif name is not None:
            sequences[name] += line.strip()
    return sequences


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def prepare_workdir(workdir: Path, tiny_bundle: Path) -> None:
    """What the docs' examples expect to find in the directory they run in."""
    shutil.copytree(ROOT / "examples", workdir / "examples", symlinks=True)
    sequences = fasta_sequences(workdir / "examples" / "genes.fasta")

    def with_sequence(row: dict) -> dict:
        return {"id": row["id"], "sequence": sequences[row["id"]], **row}

    write_jsonl(workdir / "yeast.jsonl", [with_sequence(row) for row in YEAST])  # SGD style
    write_jsonl(workdir / "rfam.jsonl", [with_sequence(row) for row in RFAM])  # Rfam style
    write_jsonl(workdir / "train.jsonl", [
        {"id": identifier, "sequence": sequence, "text": TRAIN_TEXTS[i % len(TRAIN_TEXTS)]}
        for i, (identifier, sequence) in enumerate(make_records(12, seed=7))
    ])
    # A base bundle for the training examples: tiny random models, so two steps take seconds.
    shutil.copytree(tiny_bundle, workdir / "base")


def example_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("SEQCHAT_HOME", None)
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        SEQCHAT_HOME=str(tmp_path / "seqchat-home"),
        MPLCONFIGDIR=str(tmp_path / "matplotlib"),
        XDG_CACHE_HOME=str(tmp_path / "cache"),
        OMP_NUM_THREADS="1",
        PYTHONUNBUFFERED="1",  # stdout and stderr reach the shared pipe in the order written
        HF_HUB_OFFLINE="1",
        COLUMNS="100",  # the width rich and click lay their tables and help out for
    )
    return env


# --- the tests -----------------------------------------------------------------------------


@pytest.mark.parametrize("block", BLOCKS, ids=[block.id for block in BLOCKS])
def test_doc_example(block: Block, tmp_path: Path, tiny_bundle: Path) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    prepare_workdir(workdir, tiny_bundle)
    try:
        run_block(block, workdir, example_env(tmp_path), tmp_path)
    except ExampleFailed as failure:
        pytest.fail(f"{block.id}: {failure}", pytrace=False)


def blocks_by_page() -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    for block in BLOCKS:
        counts.setdefault(block.source, {}).setdefault(block.kind, 0)
        counts[block.source][block.kind] += 1
    return counts


def test_the_examples_are_found() -> None:
    """The extractor finds the runnable blocks the docs have (a lost fence or a changed
    convention would otherwise leave the examples untested without a sound)."""
    assert len(BLOCKS) >= 15, [block.id for block in BLOCKS]
    counts = blocks_by_page()
    console_pages = ("getting-started.md", "annotate.md", "bundle.md", "training.md", "eval.md",
                     "pipelines.md", "repl.md")
    for page in console_pages:
        assert counts.get(page, {}).get("console", 0) >= 1, (page, counts)
    for page in ("README.md", "python-api.md", "repl.md", "qa-templates.md"):
        assert counts.get(page, {}).get("python", 0) >= 1, (page, counts)
    for block in BLOCKS:
        if block.kind == "console":
            assert block.commands(), f"{block.id}: a console block without a `$ ` command"


SYNTHETIC = textwrap.dedent("""\
    # A page

    Not run:

        $ false

    ```sh
    false
    ```

    - In a list:

      ```console
      $ printf 'id\\tlength\\nYLL064C\\t363\\n' > table.tsv
      $ cat table.tsv
      id       length
      ...
      YLL064C  3...
      $ echo one \\
          two
      one two
      $ cat <<'EOF'
      > first
      > second
      > EOF
      second
      ```

    ```console
    $ echo started > started.txt
    $ ls no-such-file
    $ echo never > never.txt
    ```

    ```console
    $ echo hello
    goodbye
    ```

    ```console
    $ false | true
    ```

    ```python
    import sys
    print("from python")
    sys.exit(3)
    ```

    ```python
    import os
    assert os.path.exists("yeast.jsonl"), "not in the example's directory"
    print({}["no such key"])
    ```
    """)


def test_the_extractor_and_runner_catch_broken_examples(tmp_path: Path) -> None:
    """A test that cannot fail is no test: a broken command, wrong shown output, a failure
    inside a pipeline and failing python blocks are each reported; good ones pass."""
    blocks = extract_blocks(SYNTHETIC, "synthetic.md")
    assert [(block.line, block.kind) for block in blocks] == [
        (13, "console"), (29, "console"), (35, "console"), (40, "console"), (44, "python"),
        (50, "python"),
    ]
    good, broken, wrong_output, pipeline, python, python_error = blocks
    assert [command.text for command in good.commands()] == [
        "printf 'id\\tlength\\nYLL064C\\t363\\n' > table.tsv",
        "cat table.tsv",
        "echo one \\\n    two",
        "cat <<'EOF'\nfirst\nsecond\nEOF",
    ]
    env = example_env(tmp_path)

    def run(block: Block) -> Path:
        workdir = tmp_path / f"block{block.line}"
        workdir.mkdir()
        run_block(block, workdir, env, tmp_path)
        return workdir

    run(good)
    with pytest.raises(ExampleFailed, match=r"line 31: `\$ ls no-such-file` exited with status 2") as failure:
        run(broken)
    assert "no-such-file" in str(failure.value)
    assert (tmp_path / "block29" / "started.txt").exists()
    assert not (tmp_path / "block29" / "never.txt").exists()  # nothing runs after a failure
    with pytest.raises(ExampleFailed, match="'goodbye' is not in the output"):
        run(wrong_output)
    with pytest.raises(ExampleFailed, match="exited with status 1"):
        run(pipeline)
    with pytest.raises(ExampleFailed, match="(?s)exited with status 3.*from python"):
        run(python)
    cwd = os.getcwd()
    (tmp_path / "block50").mkdir()
    (tmp_path / "block50" / "yeast.jsonl").touch()
    with pytest.raises(ExampleFailed, match="(?s)line 50 raised an exception.*KeyError: 'no such key'"):
        run_block(python_error, tmp_path / "block50", env, tmp_path)
    assert os.getcwd() == cwd and os.environ.get("SEQCHAT_HOME") != env["SEQCHAT_HOME"]  # restored


def test_shown_output_patterns() -> None:
    pattern = shown_pattern("id  length  ...  n_tokens")
    assert pattern.fullmatch("id\tlength\tdescription\tn_tokens")
    assert not pattern.fullmatch("id\tlength\tdescription\tn_tokens\tmean_logprob")
    assert shown_pattern("# prompt: {sequence}\\nWhat?").fullmatch("# prompt: {sequence}\\nWhat?")
    assert not shown_pattern("default  shipped  ...").fullmatch("default-instruct\tshipped\t/x")

