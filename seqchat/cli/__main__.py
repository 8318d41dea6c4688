"""`python -m seqchat.cli` (and `torchrun -m seqchat.cli`)."""

from seqchat.cli import main

main()
