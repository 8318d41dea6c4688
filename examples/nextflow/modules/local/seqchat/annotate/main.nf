process SEQCHAT_ANNOTATE {
    tag "${meta.id}"
    label 'process_medium'

    // seqchat is installed from a wheel built from a checkout (environment.yml, $SEQCHAT_WHEELS);
    // no biocontainer is published.
    conda "${moduleDir}/environment.yml"

    input:
    tuple val(meta), path(fasta)
    path bundle     // a bundle directory, or [] for the bundle shipped with seqchat

    output:
    tuple val(meta), path("*.tsv"), emit: annotations
    path "versions.yml"           , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args   = task.ext.args ?: ''
    def prefix = task.ext.prefix ?: "${meta.id}"
    def model  = bundle ? "--model ${bundle}" : ''
    """
    seqchat annotate \\
        ${model} \\
        ${args} \\
        --threads ${task.cpus} \\
        --quiet \\
        --output ${prefix}.tsv \\
        ${fasta}

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        seqchat: \$(seqchat --version | sed 's/^seqchat //')
    END_VERSIONS
    """

    stub:
    def prefix = task.ext.prefix ?: "${meta.id}"
    """
    printf 'id\\tlength\\tdescription\\tn_tokens\\tmean_logprob\\n' > ${prefix}.tsv

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        seqchat: \$(seqchat --version | sed 's/^seqchat //')
    END_VERSIONS
    """
}
