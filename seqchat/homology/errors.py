"""The homology stage's one-line errors: bad reference input, unusable reference directories."""

from __future__ import annotations

from seqchat.errors import SeqchatError


class ReferenceInputError(SeqchatError, ValueError):
    """A reference input file is unusable; the message names the file and the record."""


class ReferenceBuildError(SeqchatError):
    """A reference set cannot be written where it was asked for."""


class ReferenceLoadError(SeqchatError):
    """A reference directory is missing, corrupt or from an incompatible format version."""
