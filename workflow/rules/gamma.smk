# The runtime gamma controller (paper Figure 3) on every image and layer, all gammas of a layer in one growing pass.
# It needs only the image's IFMs, so it runs beside the sweeps (first: it is the longest job); the tables rule checks
# its windows against n*(gamma) of the sweeps (ifmsan report --controller).
rule gamma_controller:
    input:
        ifms=rules.extract.output[0],
        model=model_inputs,
    output:
        report(
            f"{OUT}/gamma/controller/{{image}}.csv",
            caption="../report/controller.rst",
            category="Gamma controller",
            labels={"image": "{image}"},
        ),
    log:
        f"logs/{RUN}/gamma/{{image}}.log",
    priority: job_priority
    conda:
        CONDA_ENV_FILE
    threads: config["threads"]
    resources:
        mem_mb=2500,
        runtime=30,
        gpu=1 if config["device"] == "cuda" else 0,
    params:
        model=model_args,
        hashes=hash_args("extract_hash", "config_hash"),
        layers=model_layers(),
        gammas=[str(g) for g in config["gammas"]],
        values=windows_arg(),
        batch_size=config["batch_size"],
        threads=config["threads"],  # passed as a value so results never depend on --cores
    shell:
        "ifmsan gamma {params.model:q} {params.hashes:q} --ifms {input.ifms:q} --layers {params.layers:q}"
        " --gammas {params.gammas:q} --values {params.values:q} --batch-size {params.batch_size:q}"
        " --threads {params.threads:q} --out {output:q} > {log:q} 2>&1"
