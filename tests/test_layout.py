"""The package's layout: each stage imports only the stages below it, read from the source
with `ast` so that the rule cannot drift from the code (docs/architecture.md)."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "seqchat"

BASE = "base"
"""errors, home, system and the package's own __init__ (the version): used by every stage."""

LAYER_OF_TOP_MODULE = {
    "__init__": BASE,
    "errors": BASE,
    "home": BASE,
    "system": BASE,
    "bundle": "pipeline",
    "bundle_paths": "pipeline",
    "bundle_schema": "pipeline",
    "annotate": "pipeline",
    "loading": "pipeline",
    "chat": "pipeline",
    "repl": "interface",
}
"""Modules at the top of the package; a subpackage is a layer of its own name."""

MAY_IMPORT = {
    BASE: {BASE},
    "io": {BASE, "io"},
    "homology": {BASE, "io", "homology"},
    "encode": {BASE, "io", "encode"},
    "llm": {BASE, "llm"},
    "pipeline": {BASE, "io", "homology", "encode", "llm", "pipeline"},
    "train": {BASE, "io", "homology", "encode", "llm", "pipeline", "train"},
    "evaluate": {BASE, "io", "homology", "encode", "llm", "pipeline", "evaluate"},
    "interface": {BASE, "io", "homology", "encode", "llm", "pipeline", "train", "evaluate",
                  "interface", "cli"},
    "cli": {BASE, "io", "homology", "encode", "llm", "pipeline", "train", "evaluate",
            "interface", "cli"},
}
"""The stages in data-flow order (FASTA -> records -> homology -> encoder -> projector ->
runtime -> writer), then what is built from them: a layer never imports one above it."""


def layer(module: str) -> str:
    """`seqchat.encode.export` -> "encode"; `seqchat.bundle` -> "pipeline"."""
    parts = module.split(".")
    assert parts[0] == "seqchat", module
    if len(parts) == 1:
        return BASE
    if (PACKAGE / parts[1]).is_dir():
        return parts[1]
    return LAYER_OF_TOP_MODULE[parts[1]]


def module_name(path: Path, root: Path) -> str:
    relative = path.relative_to(root.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every seqchat import in a file, function-level ones included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
            submodules = [name for name in names if _is_module(name)]
            found += [(node.lineno, name) for name in submodules] or [(node.lineno, node.module)]
    return [(line, name) for line, name in found if name.split(".")[0] == "seqchat"]


def _is_module(name: str) -> bool:
    relative = Path(*name.split(".")[1:]) if "." in name else Path()
    return (PACKAGE / relative).is_dir() or (PACKAGE / relative).with_suffix(".py").is_file()


def violations(root: Path) -> list[str]:
    """Every import of a layer that its layer may not import, as `file:line: a -> b`."""
    problems = []
    for path in sorted(root.rglob("*.py")):
        importer = module_name(path, root)
        for line, imported in imported_modules(path):
            if imported.startswith("seqchat.bundles"):
                continue
            if layer(imported) not in MAY_IMPORT[layer(importer)]:
                problems.append(f"{path.relative_to(root.parent)}:{line}: {importer} -> {imported}")
    return problems


def test_every_stage_imports_only_stages_below_it() -> None:
    assert violations(PACKAGE) == []


def test_every_module_has_a_layer() -> None:
    tops = {path.stem for path in PACKAGE.glob("*.py")}
    subpackages = {path.name for path in PACKAGE.iterdir() if (path / "__init__.py").is_file()}
    assert tops == set(LAYER_OF_TOP_MODULE)
    assert subpackages <= set(MAY_IMPORT)


def test_a_back_import_is_caught(tmp_path: Path) -> None:
    """The check fails when a lower stage reaches up, at module level or inside a function."""
    copy = tmp_path / "seqchat"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    with (copy / "io" / "sequences.py").open("a") as handle:
        handle.write("\nfrom seqchat.annotate import Annotator\n")
    with (copy / "llm" / "runtime.py").open("a") as handle:
        handle.write("\n\ndef _late():\n    import seqchat.encode.encoders\n")
    found = violations(copy)
    assert len(found) == 2
    assert found[0].startswith("seqchat/io/sequences.py:")
    assert found[0].endswith("seqchat.io.sequences -> seqchat.annotate")
    assert found[1].endswith("seqchat.llm.runtime -> seqchat.encode.encoders")


def test_every_subpackage_says_what_it_takes_and_gives() -> None:
    for init in PACKAGE.glob("*/__init__.py"):
        docstring = ast.get_docstring(ast.parse(init.read_text()))
        assert docstring and len(docstring.split()) >= 12, init
