# Downloads: weights, Caffe's mean file and URL images, each verified by checksum into data/.
# Local rules: the compute nodes of a cluster often have no internet.
localrules:
    fetch_image,


if isinstance(config["model"]["weights"], dict) and "url" in config["model"]["weights"]:

    localrules:
        fetch_weights,

    rule fetch_weights:
        output:
            weights_file(),
        log:
            f"logs/{RUN}/fetch/weights.log",
        conda:
            CONDA_ENV_FILE
        params:
            source=lambda wildcards: download_args(config["model"]["weights"]),  # a function: its value is not formatted
        shell:
            "ifmsan fetch {params.source:q} {output:q} > {log:q} 2>&1"


if converted_weights_file():

    localrules:
        convert_weights,

    # bvlc_alexnet: parse the 233 MB caffemodel once into a memory-mapped .safetensors file that records its sha1;
    # the jobs load that and compare the recorded sums with the config's instead of hashing and parsing it again.
    rule convert_weights:
        input:
            weights_file(),
        output:
            converted_weights_file(),
        log:
            f"logs/{RUN}/fetch/convert_weights.log",
        conda:
            CONDA_ENV_FILE
        params:
            sums=lambda wildcards: checksum_args(None, config["model"]["weights"]),  # a function: not formatted
        shell:
            "ifmsan convert-weights {input:q} --out {output:q} {params.sums:q} > {log:q} 2>&1"


if config["model"]["mean_file"] and "url" in config["model"]["mean_file"]:

    localrules:
        fetch_mean_file,

    rule fetch_mean_file:
        output:
            mean_file(),
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
