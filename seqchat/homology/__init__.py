"""Homology search against annotated reference sequences.

Takes sequence records and a reference set and gives alignment hits (reference id,
description, identity, coverage, bit score, E-value): the evidence shown in every output
row and read by the LLM.

Modules, in dependency order (import from them; nothing is re-exported here, so importing
the package stays free of numpy and pyhmmer):

- `errors`: the one-line errors of this stage;
- `orf`, `kmers`: coding ORFs, and the k-mer codes of the prefilter;
- `inputs`: reading reference sequences (FASTA, JSONL) and annotations (TSV, JSONL);
- `index`: the memory-mapped k-mer index;
- `reference`: a reference set on disk (`load_reference`, `Reference`, `ReferenceInfo`);
- `build`: `build_reference`;
- `parallel`, `align`: ordered thread maps, and pyhmmer scoring of candidates;
- `search`: `search` and `Hit`;
- `transfer`: `transfer_description`, the alignment-transfer baseline.
"""
