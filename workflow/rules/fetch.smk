# Downloads: weights, Caffe's mean file and URL images, each verified by checksum into data/.
# Local rules: the compute nodes of a cluster often have no internet. fetch_weights, convert_weights and
# fetch_mean_file make their file only when the model entry asks for it (otherwise they have no output).
localrules:
    fetch_weights,
    convert_weights,
    fetch_mean_file,
    fetch_image,


rule fetch_weights:
    output:
        *download_output("weights"),
    log:
        f"logs/{RUN}/fetch/weights.log",
    conda:
        CONDA_ENV_FILE
    params:
        source=lambda wildcards: download_args(config["model"]["weights"]),  # a function: its value is not formatted
    shell:
        "ifmsan fetch {params.source:q} {output:q} > {log:q} 2>&1"


# bvlc_alexnet: parse the 233 MB caffemodel once into a memory-mapped .safetensors file that records its sha1 (bound
# to the tensors by a content checksum), and its digest <file>.xxh3 beside it; the jobs check the file's bytes against
# that digest and compare the recorded sums with the config's instead of hashing and parsing the caffemodel again.
rule convert_weights:
    input:
        lambda wildcards: weights_file(),
    output:
        **(
            {"weights": converted_weights_file(), "digest": converted_weights_digest()}
            if converted_weights_file()
            else {}
        ),
    log:
        f"logs/{RUN}/fetch/convert_weights.log",
    benchmark:
        f"logs/{RUN}/benchmarks/convert_weights.tsv"
    conda:
        CONDA_ENV_FILE
    params:
        sums=lambda wildcards: checksum_args(None, config["model"]["weights"]),  # a function: not formatted
    shell:
        "ifmsan convert-weights {input:q} --out {output.weights:q} {params.sums:q} > {log:q} 2>&1"


rule fetch_mean_file:
    output:
        *download_output("mean_file"),
    log:
        f"logs/{RUN}/fetch/mean_file.log",
    conda:
        CONDA_ENV_FILE
    params:
        source=lambda wildcards: download_args(config["model"]["mean_file"]),  # a function: its value is not formatted
    shell:
        "ifmsan fetch {params.source:q} {output:q} > {log:q} 2>&1"


rule fetch_image:
    output:
        "data/images/{image}.{ext}",
    log:
        f"logs/{RUN}/fetch/{{image}}.{{ext}}.log",
    wildcard_constraints:
        ext="[A-Za-z0-9]+",
    conda:
        CONDA_ENV_FILE
    params:
        url=lambda wildcards: IMAGES[wildcards.image]["source"],
        sha256=lambda wildcards: IMAGES[wildcards.image]["sha256"],  # required for URLs by the schema
    shell:
        "ifmsan fetch {params.url:q} {output:q} --sha256 {params.sha256:q} > {log:q} 2>&1"
