"""Snakemake wrapper for `seqchat annotate`: one functional description per sequence of a
FASTA file, written as TSV, JSON Lines or JSON (chosen by the output's suffix)."""

__author__ = "seqchat developers"
__copyright__ = "Copyright 2025, seqchat developers"
__license__ = "AGPL-3.0-or-later"

from snakemake.shell import shell

bundle = snakemake.params.get("bundle", "default")
shard = snakemake.params.get("shard", "")
extra = snakemake.params.get("extra", "")
resume = snakemake.params.get("resume", False)
log = snakemake.log_fmt_shell(stdout=True, stderr=True)

output = str(snakemake.output[0])
fmt = "jsonl" if output.endswith(".jsonl") else "json" if output.endswith(".json") else "tsv"
shard_option = f"--shard {shard}" if shard else ""
# A job killed half-way leaves <output>.partial: --resume continues it (same settings only),
# --force starts over, as Snakemake's own rerun of an incomplete job does.
restart_option = "--resume" if resume else "--force"

shell(
    "seqchat annotate"
    " --model {bundle:q}"
    " --threads {snakemake.threads}"
    " --format {fmt}"
    " --quiet"
    " {restart_option}"
    " {shard_option}"
    " {extra}"
    " --output {output:q}"
    " {snakemake.input.fasta:q}"
    " {log}"
)
