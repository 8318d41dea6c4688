"""The one exception type the CLI turns into a one-line message and a non-zero exit."""


class SeqchatError(Exception):
    """An error the user can act on; its message is one line naming what went wrong."""
