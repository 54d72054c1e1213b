# Downloads: weights, Caffe's mean file and URL images, each verified by checksum into data/.
# Local rules: the compute nodes of a cluster often have no internet.
localrules:
    fetch_image,


if isinstance(config["model"]["weights"], dict):

    localrules:
        fetch_weights,

    rule fetch_weights:
        output:
            weights_file(),
        log:
            f"logs/{RUN}/fetch/weights.log",
        params:
            source=download_args(config["model"]["weights"]),
        conda:
            "../../environment.yml"
        shell:
            "ifmsan fetch {params.source} {output} > {log} 2>&1"


if config["model"]["mean_file"]:

    localrules:
        fetch_mean_file,

    rule fetch_mean_file:
        output:
            mean_file(),
        log:
            f"logs/{RUN}/fetch/mean_file.log",
        params:
            source=download_args(config["model"]["mean_file"]),
        conda:
            "../../environment.yml"
        shell:
            "ifmsan fetch {params.source} {output} > {log} 2>&1"


rule fetch_image:
    output:
        "data/images/{image}.{ext}",
    log:
        f"logs/{RUN}/fetch/{{image}}.{{ext}}.log",
    params:
        url=lambda wildcards: IMAGES[wildcards.image]["source"],
        sha256=lambda wildcards: IMAGES[wildcards.image].get("sha256", ""),
    wildcard_constraints:
        ext="[A-Za-z0-9]+",
    conda:
        "../../environment.yml"
    shell:
        "ifmsan fetch '{params.url}' {output} --sha256 {params.sha256} > {log} 2>&1"
