# The heavy stage: one job per image x layer, sweeping every configured knob over its whole range.
rule sweep:
    input:
        ifms=f"{OUT}/ifms/{{image}}.nc",
        model=model_inputs,
    output:
        expand(f"{OUT}/sweeps/{{{{image}}}}/{{{{layer}}}}/{{knob}}.nc", knob=config["knobs"]),
    log:
        f"logs/{RUN}/sweep/{{image}}/{{layer}}.log",
    params:
        model=model_args,
        knobs=" ".join(config["knobs"]),
        windows=windows_arg(),
        scales=",".join(repr(float(s)) for s in config["noise_scales"]),
        out_dir=lambda wildcards: f"{OUT}/sweeps/{wildcards.image}/{wildcards.layer}",
        seed=config["seed"],
        batch_size=config["batch_size"],
        threads=config["threads"],  # passed as a value so results never depend on --cores
    threads: config["threads"]
    resources:
        mem_mb=2500,
        runtime=60,
        gpu=1 if config["device"] == "cuda" else 0,
    conda:
        "../../environment.yml"
    shell:
        "ifmsan sweep {params.model} --ifms {input.ifms} --layer {wildcards.layer} --knob {params.knobs}"
        " --values {params.windows} --scales {params.scales} --seed {params.seed} --batch-size {params.batch_size}"
        " --threads {params.threads} --out-dir {params.out_dir} > {log} 2>&1"
