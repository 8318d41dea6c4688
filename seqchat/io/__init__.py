"""Input and output: FASTA in, result tables out.

Takes paths (plain, compressed or `-` for stdin) and gives validated
`SequenceRecord`s (`sequences`); takes result rows and writes TSV, JSON Lines or JSON
atomically with a provenance header (`writers`), reads such tables back (`tables`), and
keeps answers of sequences seen before (`cache`). Imports nothing above itself.
"""
