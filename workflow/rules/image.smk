# One job per image: its IFMs, every layer's sweeps over every knob, the chained sweeps and the gamma controller (paper
# Figure 3), in one process that loads the model once and spreads the pieces over `workers` threads of `threads` torch
# threads each; the files are those `ifmsan extract`, `sweep` and `gamma` write, byte for byte (docs/scaling.md).
rule image:
    input:
        image_input,
        model_inputs,
    output:
        ifms=IFMS_FILE,
        sweeps=image_outputs("sweeps"),
        chains=image_outputs("chains"),
        controller=report(
            CONTROLLER_FILE,
            caption="../report/controller.rst",
            category="Gamma controller",
            labels={"image": "{image}"},
        ),
    log:
        f"logs/{RUN}/image/{{image}}.log",
    benchmark:
        f"logs/{RUN}/benchmarks/image/{{image}}.tsv"
    conda:
        CONDA_ENV_FILE
    threads: image_threads
    resources:
        mem_mb=image_mem_mb,
        runtime=image_runtime,
        gpu=1 if config["device"] == "cuda" else 0,
    params:
        model=model_args,
        hashes=hash_args("extract_hash"),  # into every file; the sweep stage's config_hash goes to the sweeps only
        sweep_hashes=[arg.replace("--attr", "--sweep-attr") for arg in hash_args("config_hash")],
        image=image_args,
        layers=image_sweep_layers(),
        knobs=config["knobs"],
        windows=windows_arg(),
        scales=["--scales", ",".join(repr(float(s)) for s in config["noise_scales"])] if config["noise_scales"] else [],
        chains=[arg for layer, steps in PLAN.chains for arg in ("--chain", f"{layer}:{steps}")],
        controller_layers=model_layers(),
        gammas=[str(g) for g in config["gammas"]],
        seed=config["seed"],
        batch_size=config["batch_size"],
        threads=config["threads"],  # passed as a value so results never depend on --cores
        workers=lambda wildcards, threads: max(1, threads // config["threads"]),  # what --cores left the job
        dirs=lambda wildcards: [
            *("--sweeps-dir", f"{OUT}/sweeps/{wildcards.image}"),
            *("--chains-dir", f"{OUT}/chains/{wildcards.image}"),
        ],
    shell:
        "ifmsan image {params.model:q} {params.hashes:q} {params.sweep_hashes:q} {params.image:q}"
        " --image-id {wildcards.image:q} --ifms-out {output.ifms:q} --layers {params.layers:q} --knobs {params.knobs:q}"
        " --values {params.windows:q} {params.scales:q} --seed {params.seed:q} {params.chains:q} {params.dirs:q}"
        " --controller-layers {params.controller_layers:q} --gammas {params.gammas:q}"
        " --controller-out {output.controller:q} --batch-size {params.batch_size:q} --threads {params.threads:q}"
        " --workers {params.workers:q} > {log:q} 2>&1"
