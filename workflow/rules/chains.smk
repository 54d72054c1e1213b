# Paper Table 2 / Figure 5: pre-sanitize earlier IFMs at fixed windows, then sweep a later layer.
rule chain_sweep:
    input:
        ifms=f"{OUT}/ifms/{{image}}.nc",
        model=model_inputs,
    output:
        f"{OUT}/chains/{{image}}/{{layer}}/{{steps}}.nc",
    log:
        f"logs/{RUN}/chains/{{image}}/{{layer}}/{{steps}}.log",
    params:
        model=model_args,
        values=windows_arg(),
        batch_size=config["batch_size"],
        threads=config["threads"],  # passed as a value so results never depend on --cores
    threads: config["threads"]
    resources:
        mem_mb=2500,
        runtime=30,
        gpu=1 if config["device"] == "cuda" else 0,
    conda:
        "../../environment.yml"
    shell:
        "ifmsan sweep {params.model} --ifms {input.ifms} --layer {wildcards.layer} --knob nonzero_mean"
        " --chain '{wildcards.steps}' --values {params.values} --batch-size {params.batch_size} --threads {params.threads}"
        " --out {output} > {log} 2>&1"
