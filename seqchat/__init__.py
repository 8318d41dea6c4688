"""seqchat: read DNA and RNA sequences and write what they do, in plain English.

Nothing heavy is imported here, so `seqchat --version` and `import seqchat` stay fast;
the library API lives in `seqchat.annotate` (Annotator), `seqchat.io.sequences`
(read_records) and `seqchat.io.writers`.
"""

__version__ = "0.1.0"
