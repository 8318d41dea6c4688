"""WordNet 3.0 for METEOR: found in the system's files (Debian's wordnet-base) or NLTK's
data, without downloading anything."""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seqchat.errors import SeqchatError

if TYPE_CHECKING:  # pragma: no cover - typing only
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

WORDNET_HINT = (
    "METEOR needs WordNet 3.0: `apt-get install wordnet-base wordnet-sense-index` "
    "(Debian/Ubuntu), or `python -m nltk.downloader wordnet`, "
    "or set SEQCHAT_WORDNET_DIR to a WordNet dict directory"
)

#: Environment variable naming a WordNet 3.0 ``dict`` directory (data.noun, index.sense ...).
WORDNET_ENV = "SEQCHAT_WORDNET_DIR"

# Where distributions put the WordNet 3.0 database files (Debian's wordnet-base first).
_WORDNET_SYSTEM_DIRS: tuple[str, ...] = (
    "/usr/share/wordnet",
    "/usr/share/wordnet/dict",
    "/usr/local/share/wordnet",
    "/usr/local/WordNet-3.0/dict",
    "/opt/homebrew/share/wordnet",
)

# Files NLTK's WordNetCorpusReader reads; ``lexnames`` is absent from Debian's packages
# and is supplied from _LEXNAMES below when missing.
_WORDNET_FILES: tuple[str, ...] = (
    "index.noun",
    "index.verb",
    "index.adj",
    "index.adv",
    "data.noun",
    "data.verb",
    "data.adj",
    "data.adv",
    "noun.exc",
    "verb.exc",
    "adj.exc",
    "adv.exc",
    "index.sense",
    "cntlist.rev",
)

# The fixed list of the 45 WordNet 3.0 lexicographer files (wninput(5WN) / lexnames(5WN)):
# number, name, syntactic category (1 noun, 2 verb, 3 adjective, 4 adverb).
_LEXNAME_LIST: tuple[str, ...] = (
    "adj.all",
    "adj.pert",
    "adv.all",
    "noun.Tops",
    "noun.act",
    "noun.animal",
    "noun.artifact",
    "noun.attribute",
    "noun.body",
    "noun.cognition",
    "noun.communication",
    "noun.event",
    "noun.feeling",
    "noun.food",
    "noun.group",
    "noun.location",
    "noun.motive",
    "noun.object",
    "noun.person",
    "noun.phenomenon",
    "noun.plant",
    "noun.possession",
    "noun.process",
    "noun.quantity",
    "noun.relation",
    "noun.shape",
    "noun.state",
    "noun.substance",
    "noun.time",
    "verb.body",
    "verb.change",
    "verb.cognition",
    "verb.communication",
    "verb.competition",
    "verb.consumption",
    "verb.contact",
    "verb.creation",
    "verb.emotion",
    "verb.motion",
    "verb.perception",
    "verb.possession",
    "verb.social",
    "verb.stative",
    "verb.weather",
    "adj.ppl",
)
_LEX_CATEGORY = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}
_LEXNAMES = "".join(
    f"{i:02d}\t{name}\t{_LEX_CATEGORY[name.split('.')[0]]}\n"
    for i, name in enumerate(_LEXNAME_LIST)
)


class WordNetUnavailable(SeqchatError, RuntimeError):
    """WordNet 3.0 could not be found; the message says how to install it."""


def _wordnet_search_dirs() -> list[Path]:
    """Candidate WordNet dict directories: $SEQCHAT_WORDNET_DIR, then system locations."""
    dirs: list[Path] = []
    env = os.environ.get(WORDNET_ENV)
    if env:
        dirs.append(Path(env).expanduser())
    dirs.extend(Path(d) for d in _WORDNET_SYSTEM_DIRS)
    return dirs


def _nltk_wordnet() -> WordNetCorpusReader | None:
    """NLTK's own WordNet (``nltk.download('wordnet')``) if it is installed, else None."""
    import nltk

    for resource in ("corpora/wordnet", "corpora/wordnet.zip"):
        try:
            nltk.data.find(resource)
        except LookupError:
            continue
        from nltk.corpus import wordnet

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            wordnet.ensure_loaded()
        return wordnet
    return None


def _make_dict_reader(directory: Path) -> WordNetCorpusReader:
    """A WordNetCorpusReader on a plain WordNet dict directory such as Debian's.

    NLTK (>= 3.9.3) only opens files under a directory listed in ``nltk.data.path``
    and refuses symlinks that leave the corpus root, so the directory is appended to
    ``nltk.data.path``; the ``lexnames`` file that NLTK needs but Debian does not ship
    is served from memory instead of being written anywhere.
    """
    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    root = str(directory.resolve())
    if root not in [str(p) for p in nltk.data.path]:
        nltk.data.path.append(root)
    has_lexnames = (directory / "lexnames").is_file()

    class _DictWordNetReader(WordNetCorpusReader):
        def open(self, fileid: str) -> Any:  # noqa: A003 - NLTK's method name
            if fileid == "lexnames" and not has_lexnames:
                return io.StringIO(_LEXNAMES)
            return super().open(fileid)

        def map_wn(self, version: str = "wordnet") -> None:
            # NLTK would build a sense-key map from this WordNet to the one in
            # nltk_data ("wordnet", i.e. 3.0) by loading the latter, which is not
            # installed here.  It only serves the multilingual (OMW) functions, and
            # Debian's WordNet is 3.0 itself, so the map is the identity: skip it.
            return None

    with warnings.catch_warnings():
        # "The multilingual functions are not available": we need English only.
        warnings.simplefilter("ignore")
        return _DictWordNetReader(root, None)


_WORDNET_CACHE: dict[str, Any] = {}


def load_wordnet() -> WordNetCorpusReader:
    """Find WordNet 3.0 for METEOR, without any network access.

    Order: ``$SEQCHAT_WORDNET_DIR``; NLTK's own data (``nltk.download('wordnet')``);
    the system dict directories (Debian/Ubuntu ``wordnet-base`` +
    ``wordnet-sense-index`` install to ``/usr/share/wordnet``).  The result is cached.
    Raises :class:`WordNetUnavailable` (message = install hint) if none is usable.
    """
    if "reader" in _WORDNET_CACHE:
        return _WORDNET_CACHE["reader"]
    problems: list[str] = []
    env_dir = os.environ.get(WORDNET_ENV)
    candidates = _wordnet_search_dirs()
    reader: Any = None
    if not env_dir:
        try:
            reader = _nltk_wordnet()
        except Exception as exc:  # broken nltk_data install: fall through to system dirs
            problems.append(f"nltk_data wordnet: {' '.join(str(exc).split())}")
    if reader is None:
        for directory in candidates:
            if not directory.is_dir():
                continue
            missing = [f for f in _WORDNET_FILES if not (directory / f).is_file()]
            if missing:
                problems.append(f"{directory}: missing {', '.join(missing)}")
                continue
            try:
                reader = _make_dict_reader(directory)
                reader.synsets("gene")  # touch the index so a broken install fails here
                break
            except Exception as exc:
                problems.append(f"{directory}: {' '.join(str(exc).split())}")
                reader = None
    if reader is None:
        detail = f" ({'; '.join(problems)})" if problems else ""
        raise WordNetUnavailable(WORDNET_HINT + detail)
    _WORDNET_CACHE["reader"] = reader
    return reader
