# The heavy stage: one job per image x layer, sweeping every configured knob over its whole range.
rule sweep:
    input:
        ifms=rules.extract.output[0],
        model=model_inputs,
    output:
        **{knob: f"{OUT}/sweeps/{{image}}/{{layer}}/{knob}.nc" for knob in config["knobs"]},
    log:
        f"logs/{RUN}/sweep/{{image}}/{{layer}}.log",
    priority: job_priority
    conda:
        CONDA_ENV_FILE
    threads: config["threads"]
    resources:
        mem_mb=2500,
        runtime=60,
        gpu=1 if config["device"] == "cuda" else 0,
    params:
        model=model_args,
        hashes=hash_args("extract_hash", "config_hash"),  # knobs, scales and seed are options below
        knobs=config["knobs"],
        windows=windows_arg(),
        scales=["--scales", ",".join(repr(float(s)) for s in config["noise_scales"])] if config["noise_scales"] else [],
        out_dir=lambda wildcards: f"{OUT}/sweeps/{wildcards.image}/{wildcards.layer}",
        seed=config["seed"],
        batch_size=config["batch_size"],
        threads=config["threads"],  # passed as a value so results never depend on --cores
    shell:
        "ifmsan sweep {params.model:q} {params.hashes:q} --ifms {input.ifms:q} --layer {wildcards.layer:q}"
        " --knob {params.knobs:q} --values {params.windows:q} {params.scales:q} --seed {params.seed:q}"
        " --batch-size {params.batch_size:q} --threads {params.threads:q} --out-dir {params.out_dir:q} > {log:q} 2>&1"
