# One image through the network: every IFM, the softmax and the target class, as NetCDF.
rule extract:
    input:
        image_input,
        model_inputs,
    output:
        f"{OUT}/ifms/{{image}}.nc",
    log:
        f"logs/{RUN}/extract/{{image}}.log",
    conda:
        CONDA_ENV_FILE
    threads: config["threads"]
    resources:
        mem_mb=2000,
        runtime=10,
        gpu=1 if config["device"] == "cuda" else 0,
    params:
        model=model_args,
        hashes=hash_args("extract_hash"),  # what extraction uses: windows, seed or batch size rerun no extract job
        image=image_args,
        threads=config["threads"],
    shell:
        "ifmsan extract {params.model:q} {params.hashes:q} {params.image:q} --image-id {wildcards.image:q}"
        " --threads {params.threads:q} --out {output:q} > {log:q} 2>&1"
