# Paper Table 2 / Figure 5: pre-sanitize earlier IFMs at fixed windows, then sweep a later layer.
rule chain_sweep:
    input:
        ifms=rules.extract.output[0],
        model=model_inputs,
    output:
        f"{OUT}/chains/{{image}}/{{layer}}/{{steps}}.nc",
    log:
        f"logs/{RUN}/chains/{{image}}/{{layer}}/{{steps}}.log",
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
        hashes=hash_args("extract_hash", "config_hash"),  # not the knobs, scales or seed, which it does not use
        values=windows_arg(),
        batch_size=config["batch_size"],
        threads=config["threads"],  # passed as a value so results never depend on --cores
    shell:
        "ifmsan sweep {params.model:q} {params.hashes:q} --ifms {input.ifms:q} --layer {wildcards.layer:q}"
        " --knob nonzero_mean --chain {wildcards.steps:q} --values {params.values:q} --batch-size {params.batch_size:q}"
        " --threads {params.threads:q} --out {output:q} > {log:q} 2>&1"
