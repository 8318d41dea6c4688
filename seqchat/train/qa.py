"""Question/answer pairs for stage-2 instruction tuning, built from structured annotations.

Every answer is derived from one field of one row by a fixed English template: there is no
randomness, so the same input always gives the same pairs in the same order. A question
whose source field is empty is skipped rather than answered with "unknown". Answers are
one sentence, whitespace-trimmed and ending with a period.

Three kinds of row are recognised (see :func:`detect_kind`):

``yeast``
    SGD gene rows (``text``, ``product``, ``feature``, ``go_function``, ``go_process``,
    ``go_component``; GO fields hold ``;``-separated term names).
``rfam``
    Rfam/nRC rows (``label``, ``rfam_acc`` and a ``text`` of the form
    ``"<family>. Rfam RNA type: <type>. <curator comment> GO: <term>; <term>."``).
``text``
    Any other row with a ``text`` field: one "Describe this sequence." pair.

Library use::

    from seqchat.train.qa import qa_pairs
    from seqchat.train.qa_files import write_qa_jsonl
    pairs = qa_pairs({"id": "YAL068C", "sequence": "ATG...", "text": "...", ...})
    n = write_qa_jsonl(["yeast_sgd/train.jsonl"], "qa.jsonl", kinds={"yeast"})

Each pair is a dict with ``id`` (the row's id, unchanged, so splits by id or chromosome
still work), ``question_id`` (``"<id>#<template key>"``, unique and stable), ``kind``,
``question``, ``answer``, ``sequence`` (canonical: uppercase, U as T) and, when the row
has them, the grouping fields ``chrom``, ``feature``, ``label``, ``rfam_acc`` and ``split``.
The templates are listed in ``docs/qa-templates.md``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from seqchat.errors import SeqchatError
from seqchat.io.sequences import SequenceInputError, canonical_sequence

__all__ = [
    "DEFAULT_QUESTION",
    "DESCRIBE_GENE",
    "DESCRIBE_RNA",
    "GENE_COMPONENT",
    "GENE_FUNCTION",
    "GENE_PROCESS",
    "GENE_PRODUCT",
    "KINDS",
    "KIND_RFAM",
    "KIND_TEXT",
    "KIND_YEAST",
    "QAInputError",
    "RNA_CLASS",
    "RNA_FAMILY",
    "RNA_FUNCTION",
    "RfamText",
    "TEMPLATES",
    "Template",
    "describe_question",
    "detect_kind",
    "parse_rfam_text",
    "qa_pairs",
    "readable_rna_class",
]

# --- questions -------------------------------------------------------------------------

DEFAULT_QUESTION = "Describe this sequence."
"""The describe question for rows of no particular kind (and the generic fallback)."""

DESCRIBE_GENE = "Describe this gene."
GENE_PRODUCT = "What does it encode?"
GENE_FUNCTION = "What molecular function does this gene have?"
GENE_PROCESS = "Which biological process is it involved in?"
GENE_COMPONENT = "Where in the cell does its product act?"

DESCRIBE_RNA = "Describe this RNA."
RNA_CLASS = "What class of RNA is this?"
RNA_FAMILY = "Which RNA family does it belong to?"
RNA_FUNCTION = "What is its function?"

KIND_YEAST = "yeast"
KIND_RFAM = "rfam"
KIND_TEXT = "text"
KINDS: tuple[str, ...] = (KIND_YEAST, KIND_RFAM, KIND_TEXT)


@dataclass(frozen=True)
class Template:
    """One question of one kind; ``key`` names it in ``question_id`` and the docs."""

    key: str
    question: str
    source: str
    """The row field(s) the answer comes from (documentation only)."""


TEMPLATES: dict[str, tuple[Template, ...]] = {
    KIND_YEAST: (
        Template("describe", DESCRIBE_GENE, "text"),
        Template("product", GENE_PRODUCT, "product, feature"),
        Template("function", GENE_FUNCTION, "go_function"),
        Template("process", GENE_PROCESS, "go_process"),
        Template("component", GENE_COMPONENT, "go_component"),
    ),
    KIND_RFAM: (
        Template("describe", DESCRIBE_RNA, "text (curator comment)"),
        Template("class", RNA_CLASS, "label"),
        Template("family", RNA_FAMILY, "text (family name), rfam_acc"),
        Template("function", RNA_FUNCTION, "text (GO terms)"),
    ),
    KIND_TEXT: (Template("describe", DEFAULT_QUESTION, "text"),),
}
"""The templates of each kind, in the order their pairs are emitted."""


def describe_question(kind: str | None) -> str:
    """The describe question of a kind: the one to ask by default when annotating.

    ``None`` or an unknown kind gives :data:`DEFAULT_QUESTION`.
    """
    if kind == KIND_YEAST:
        return DESCRIBE_GENE
    if kind == KIND_RFAM:
        return DESCRIBE_RNA
    return DEFAULT_QUESTION


# --- errors ----------------------------------------------------------------------------


class QAInputError(SeqchatError):
    """A row or file cannot be turned into QA pairs; the message is one line naming
    the file and line number when there is one."""


# --- readable English ------------------------------------------------------------------

RNA_CLASS_NAMES: dict[str, str] = {
    "5S_rRNA": "5S ribosomal RNA",
    "5_8S_rRNA": "5.8S ribosomal RNA",
    "tRNA": "transfer RNA",
    "rRNA": "ribosomal RNA",
    "CD-box": "C/D box small nucleolar RNA",
    "HACA-box": "H/ACA box small nucleolar RNA",
    "snoRNA": "small nucleolar RNA",
    "snRNA": "small nuclear RNA",
    "scaRNA": "small Cajal body-specific RNA",
    "miRNA": "microRNA",
    "Intron_gpI": "group I intron",
    "Intron_gpII": "group II intron",
    "IRES": "internal ribosome entry site",
    "leader": "leader RNA",
    "riboswitch": "riboswitch",
    "ribozyme": "ribozyme",
    "lncRNA": "long non-coding RNA",
    "ncRNA": "non-coding RNA",
}
"""nRC / Rfam class labels -> readable class names (keys are exact labels)."""

_RNA_CLASS_BY_FOLDED = {key.casefold(): value for key, value in RNA_CLASS_NAMES.items()}


def readable_rna_class(label: str) -> str:
    """A readable name for an RNA class label: ``"CD-box"`` -> ``"C/D box small nucleolar
    RNA"``. Unknown labels come back with underscores as spaces."""
    label = _clean(label)
    known = RNA_CLASS_NAMES.get(label) or _RNA_CLASS_BY_FOLDED.get(label.casefold())
    return known if known is not None else label.replace("_", " ")


_VOWEL_SOUND_LETTERS = set("AEFHILMNORSX")  # letters read with a vowel sound: "an H/ACA"


def _article(phrase: str) -> str:
    """'a' or 'an' for ``phrase`` (by sound, for the cases the data has)."""
    word = phrase.split(maxsplit=1)[0] if phrase.strip() else ""
    if not word:
        return "a"
    if word[0].isdigit():
        # "an 8S", "an 11S", "an 18S", "an 80S"; "a 5S", "a 25S", "a 5.8S".
        number = re.match(r"\d+", word)
        digits = number.group() if number else ""
        return "an" if digits.startswith("8") or digits in ("11", "18") else "a"
    head = re.match(r"[A-Za-z]+", word)
    letters = head.group() if head else word
    is_initialism = len(letters) == 1 or letters.isupper()
    if is_initialism and not word.lower().startswith(("uni", "use", "usu")):
        return "an" if letters[0].upper() in _VOWEL_SOUND_LETTERS else "a"
    if word.lower().startswith(("uni", "use", "usu", "one", "eu")):
        return "a"
    return "an" if word[0].lower() in "aeiou" else "a"


def _join(items: Sequence[str]) -> str:
    """English list: "a", "a and b", "a, b, and c"; semicolons when an item has a comma."""
    if len(items) <= 1:
        return "".join(items)
    if len(items) == 2:
        return f"{items[0]} and {items[1]}"
    separator = "; " if any("," in item for item in items) else ", "
    return separator.join(items[:-1]) + f"{separator}and {items[-1]}"


_NOUNS = {
    "function": ("molecular function", "molecular functions"),
    "process": ("process", "processes"),
    "component": ("component", "components"),
    "term": ("term", "terms"),
}


def _term_list(terms: Sequence[str], max_terms: int | None, noun: str) -> str:
    """Join GO terms, keeping at most ``max_terms`` and counting the rest."""
    if max_terms is None or len(terms) <= max_terms:
        return _join(terms)
    shown = list(terms[: max(max_terms, 1)])
    rest = len(terms) - len(shown)
    singular, plural = _NOUNS[noun]
    shown.append(f"{rest} other {singular if rest == 1 else plural}")
    return _join(shown)


def _clean(text: str) -> str:
    """Collapse runs of whitespace and trim."""
    return " ".join(text.split())


def _sentence(text: str) -> str:
    """Trim, capitalise a leading all-lowercase word, and end with a period."""
    text = _clean(text).rstrip(";,: ")
    if not text:
        return ""
    # "hypothetical protein; ..." -> "Hypothetical protein; ...", but leave names such
    # as "tRNA-Pro", "snoR72", "mir-1" or "psi28S" alone.
    if re.match(r"[a-z]+(?![\w-])", text):
        text = text[0].upper() + text[1:]
    if text[-1] not in ".!?":
        text += "."
    return text


def _go_terms(value: object, field: str) -> list[str]:
    """GO term names from a ';'-separated string (or a list), de-duplicated, in order."""
    if value is None:
        return []
    if isinstance(value, str):
        pieces: Iterable[object] = value.split(";")
    elif isinstance(value, (list, tuple)):
        pieces = value
    else:
        raise QAInputError(f"field {field!r} must be a string or a list of strings")
    terms: list[str] = []
    for piece in pieces:
        if not isinstance(piece, str):
            raise QAInputError(f"field {field!r} must be a string or a list of strings")
        term = _clean(piece).rstrip(".")
        if term and term not in terms:
            terms.append(term)
    return terms


def _field(row: Mapping[str, Any], name: str) -> str:
    """A text field, cleaned; missing or null is empty; other types are an error."""
    value = row.get(name)
    if value is None:
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise QAInputError(f"field {name!r} must be a string, not {type(value).__name__}")
    return _clean(value)


# --- Rfam text -------------------------------------------------------------------------


@dataclass(frozen=True)
class RfamText:
    """The parts of an Rfam family text."""

    name: str
    rna_type: str
    description: str
    go_terms: tuple[str, ...]


_RFAM_TYPE = re.compile(r"(?:^|\.\s+)Rfam RNA type:\s*([^.]*?)\s*(?:\.\s+|\.?$)")
_GO_TAIL = re.compile(r"(?:^|\s)GO:\s*(.*?)\s*$")
_CITATION = re.compile(r"\s*\[\d+(?:\s*[,\u2013-]\s*\d+)*\]")


def parse_rfam_text(text: str) -> RfamText:
    """Split ``"<name>. Rfam RNA type: <type>. <comment> GO: <t1>; <t2>."`` into parts.

    Without the ``Rfam RNA type`` marker the name is the text before the first ``". "``
    and the rest is the comment. Missing parts are empty.
    """
    text = _clean(text)
    go_terms: list[str] = []
    go = _GO_TAIL.search(text)
    if go is not None:
        go_terms = _go_terms(go.group(1).rstrip("."), "text")
        text = text[: go.start()].strip()
    marker = _RFAM_TYPE.search(text)
    if marker is not None:
        name = text[: marker.start()].strip()
        rna_type = marker.group(1).strip()
        comment = text[marker.end() :].strip()
    else:
        name, _, comment = text.partition(". ")
        rna_type = ""
    return RfamText(name.rstrip(". "), rna_type, comment.strip(), tuple(go_terms))


_ABBREVIATIONS = {
    "al", "approx", "ca", "cf", "e.g", "eg", "etc", "fig", "figs", "i.e", "ie", "no",
    "nos", "sp", "spp", "st", "vs", "viz", "var", "ssp", "subsp", "dr", "mr", "ref",
}  # fmt: skip
# A sentence end: ".", "!" or "?" before a space, or a period glued to the next
# sentence ("snoRNAs.It is ...") but not inside initials such as "U.S." or "e.g.".
_SENTENCE_END = re.compile(r"[.!?](?=\s+\S)|(?<=[A-Za-z]{2})\.(?=[A-Z][a-z])")


def _first_sentence(text: str) -> str:
    """The first sentence of a paragraph, with citation marks like "[1]" removed.

    A period ends a sentence unless it follows a known abbreviation or a single letter
    (a genus initial as in "B. subtilis").
    """
    text = _clean(_CITATION.sub("", text))
    for end in _SENTENCE_END.finditer(text):
        if text[end.start()] == ".":
            word = text[: end.start()].rsplit(maxsplit=1)[-1].lstrip("(\"'")
            if len(word) == 1 and word.isalpha():
                continue
            if word.casefold() in _ABBREVIATIONS:
                continue
        return text[: end.start() + 1]
    return text


def _family(name: str, accession: str) -> str:
    """"5S ribosomal RNA (RF00001)"; "Hammerhead ribozyme (type I), accession RF00163"."""
    if not accession:
        return name
    if name.endswith(")"):
        return f"{name}, accession {accession}"
    return f"{name} ({accession})"


# --- templates -------------------------------------------------------------------------


def _yeast_answers(row: Mapping[str, Any], max_terms: int | None) -> dict[str, str]:
    answers: dict[str, str] = {}
    answers["describe"] = _sentence(_field(row, "text"))
    answers["product"] = _product_answer(row)
    function = _go_terms(row.get("go_function"), "go_function")
    if function:
        verb = "is" if len(function) == 1 else "are"
        noun = _NOUNS["function"][0 if len(function) == 1 else 1]
        answers["function"] = f"Its {noun} {verb} {_term_list(function, max_terms, 'function')}."
    process = _go_terms(row.get("go_process"), "go_process")
    if process:
        answers["process"] = f"It is involved in {_term_list(process, max_terms, 'process')}."
    component = _go_terms(row.get("go_component"), "go_component")
    if component:
        listed = _term_list(component, max_terms, "component")
        answers["component"] = f"Its product is located in the {listed}."
    return answers


_PROTEIN_NAME = re.compile(r"^[A-Z][a-z][a-z0-9]*p$")  # SGD style: Tda8p, Spc19p
_UNNAMED_PROTEIN = re.compile(r"^(hypothetical|uncharacterized|putative) protein$", re.I)
_RNA_FEATURES = {
    "trna": "transfer RNA",
    "rrna": "ribosomal RNA",
    "ncrna": "non-coding RNA",
    "snorna": "small nucleolar RNA",
    "snrna": "small nuclear RNA",
}
# A first description clause that names an RNA class: "25S ribosomal RNA (25S rRNA)".
_RNA_CLASS_CLAUSE = re.compile(r"^[\w/.' -]*\bRNA(?: \([^()]*\))?$")


def _product_answer(row: Mapping[str, Any]) -> str:
    """What the gene encodes: its protein product, or the kind of RNA for RNA genes."""
    feature = _field(row, "feature")
    product = _field(row, "product")
    rna_class = _RNA_FEATURES.get(feature.casefold())
    if rna_class is None:
        if not product:
            return ""
        if _UNNAMED_PROTEIN.match(product):
            unnamed = product[0].lower() + product[1:]
            return f"It encodes {_article(unnamed)} {unnamed}."
        if _PROTEIN_NAME.match(product):
            return f"It encodes the protein {product}."
        return f"It encodes {product}."
    if feature.casefold() != "trna":
        # SGD names the RNA class in the description's first clause, e.g.
        # "C/D box small nucleolar RNA (snoRNA); guides ...": use it when it is just that.
        clause = _field(row, "text").split(";", 1)[0].split(",", 1)[0].strip()
        if _RNA_CLASS_CLAUSE.match(clause) and clause.casefold() != "ncrna":
            rna_class = re.sub(r"\s*\([^()]*\)$", "", clause)
    name = f" ({product})" if product else ""
    return f"It encodes {_article(rna_class)} {rna_class}{name}, not a protein."


def _rfam_answers(row: Mapping[str, Any], max_terms: int | None) -> dict[str, str]:
    parsed = parse_rfam_text(_field(row, "text"))
    accession = _field(row, "rfam_acc")
    label = _field(row, "label")
    if not label and parsed.rna_type:
        label = parsed.rna_type.split(",")[-1].strip()
    rna_class = readable_rna_class(label) if label else ""
    answers: dict[str, str] = {}

    description = _first_sentence(parsed.description) if parsed.description else ""
    if description:
        answers["describe"] = _sentence(description)
    elif rna_class and parsed.name:
        # No curator comment (common for microRNAs): describe by class and family.
        family = _family(parsed.name, accession)
        answers["describe"] = (
            f"It is {_article(rna_class)} {rna_class} of the Rfam family {family}."
        )
    if rna_class:
        answers["class"] = f"This is {_article(rna_class)} {rna_class}."
    if parsed.name:
        family = _family(parsed.name, accession)
        answers["family"] = f"It belongs to the Rfam family {family}."
    if parsed.go_terms:
        terms = _term_list(parsed.go_terms, max_terms, "term")
        noun = "term is" if len(parsed.go_terms) == 1 else "terms are"
        answers["function"] = f"Its Gene Ontology {noun} {terms}."
    return answers


def _text_answers(row: Mapping[str, Any], max_terms: int | None) -> dict[str, str]:
    return {"describe": _sentence(_field(row, "text"))}


_ANSWERS = {KIND_YEAST: _yeast_answers, KIND_RFAM: _rfam_answers, KIND_TEXT: _text_answers}
_YEAST_FIELDS = ("go_function", "go_process", "go_component", "product", "feature")
PASSTHROUGH_FIELDS = ("chrom", "feature", "label", "rfam_acc", "split")
"""Row fields copied into every pair (when present): what validation splits group by."""


def detect_kind(row: Mapping[str, Any]) -> str | None:
    """``"rfam"`` for rows with ``label`` or ``rfam_acc``, ``"yeast"`` for rows with GO,
    ``product`` or ``feature`` fields, ``"text"`` for other rows with ``text``, else None."""
    if "rfam_acc" in row or "label" in row:
        return KIND_RFAM
    if any(name in row for name in _YEAST_FIELDS):
        return KIND_YEAST
    if "text" in row:
        return KIND_TEXT
    return None


def qa_pairs(
    row: Mapping[str, Any], *, kind: str | None = None, max_terms: int | None = None
) -> list[dict[str, Any]]:
    """The QA pairs of one annotation row, in template order (see :data:`TEMPLATES`).

    ``kind`` overrides :func:`detect_kind`. ``max_terms`` caps how many GO terms an
    answer lists ("..., and 3 other processes"); None lists them all.
    Raises :class:`QAInputError` if the row has no usable ``id`` or ``sequence``, or if
    its kind cannot be told.
    """
    if not isinstance(row, Mapping):
        raise QAInputError(f"a row must be a JSON object, not {type(row).__name__}")
    row_id = _field(row, "id")
    if not row_id:
        raise QAInputError("row has no 'id'")
    raw_sequence = row.get("sequence")
    if not isinstance(raw_sequence, str) or not raw_sequence.strip():
        raise QAInputError(f"row {row_id!r} has no 'sequence'")
    try:
        sequence = canonical_sequence(raw_sequence)
    except SequenceInputError as error:
        raise QAInputError(f"row {row_id!r}: {error}") from None
    if max_terms is not None and max_terms < 1:
        raise QAInputError(f"max_terms must be at least 1, not {max_terms}")
    kind = kind if kind is not None else detect_kind(row)
    if kind not in _ANSWERS:
        raise QAInputError(
            f"row {row_id!r}: cannot tell its kind (expected label/rfam_acc, "
            "go_*/product/feature, or text fields)"
            if kind is None
            else f"unknown kind {kind!r} (expected one of {', '.join(KINDS)})"
        )
    try:
        answers = _ANSWERS[kind](row, max_terms)
    except QAInputError as error:
        raise QAInputError(f"row {row_id!r}: {error}") from None
    extra = {
        name: row[name]
        for name in PASSTHROUGH_FIELDS
        if isinstance(row.get(name), (str, int)) and row.get(name) != ""
    }
    pairs: list[dict[str, Any]] = []
    for template in TEMPLATES[kind]:
        answer = answers.get(template.key, "")
        if not answer:
            continue
        pairs.append(
            {
                "id": row_id,
                "question_id": f"{row_id}#{template.key}",
                "kind": kind,
                "question": template.question,
                "answer": answer,
                "sequence": sequence,
                **extra,
            }
        )
    return pairs
