#!/usr/bin/env nextflow
/*
 * seqchat: one annotation table per FASTA file, each annotated in `--shards` parallel
 * tasks (`seqchat annotate --shard I/N`) and merged back into input order.
 *
 *   nextflow run examples/nextflow/main.nf --input 'data/*.fa' --shards 4 --outdir results
 *   nextflow run examples/nextflow/main.nf --input 'data/*.fa' --bundle path/to/bundle -stub
 *
 * Not executed in seqchat's CI (Nextflow's launcher downloads its runtime); the module's
 * command line and versions.yml are checked there without Nextflow.
 */

nextflow.enable.dsl = 2

include { SEQCHAT_ANNOTATE } from './modules/local/seqchat/annotate/main'

process MERGE_SHARDS {
    tag "${meta.id}"
    label 'process_single'

    conda "${projectDir}/modules/local/seqchat/annotate/environment.yml"

    input:
    tuple val(meta), path(tables, stageAs: 'shards/*'), path(fasta)

    output:
    tuple val(meta), path("${meta.id}.annotations.tsv"), emit: annotations

    script:
    """
    merge_shards.py --fasta ${fasta} --output ${meta.id}.annotations.tsv ${tables}
    """

    stub:
    """
    head -n 1 ${tables[0]} > ${meta.id}.annotations.tsv
    """
}

workflow {
    if (!params.input) {
        error "Give the FASTA files with --input 'path/to/*.fa'"
    }
    def shards = params.shards as int

    ch_fasta = Channel
        .fromPath(params.input, checkIfExists: true)
        .map { fasta -> [ [ id: fasta.simpleName ], fasta ] }

    // one task per shard: meta.shard / meta.shards become --shard I/N (nextflow.config)
    ch_shards = ch_fasta.flatMap { meta, fasta ->
        (0..<shards).collect { shard -> [ meta + [ shard: shard, shards: shards ], fasta ] }
    }
    bundle = params.bundle ? file(params.bundle, checkIfExists: true) : []

    SEQCHAT_ANNOTATE(ch_shards, bundle)

    // the merge reads each table's own --shard I/N, so the order of a group does not matter
    ch_merge = SEQCHAT_ANNOTATE.out.annotations
        .map { meta, table -> [ meta.id, table ] }
        .groupTuple(size: shards)
        .join(ch_fasta.map { meta, fasta -> [ meta.id, meta, fasta ] })
        .map { id, tables, meta, fasta -> [ meta, tables, fasta ] }

    MERGE_SHARDS(ch_merge)

    SEQCHAT_ANNOTATE.out.versions
        .map { it.text }
        .unique()
        .collectFile(name: 'software_versions.yml', storeDir: "${params.outdir}/pipeline_info")
}
