# Paper Table 1 (one row per IFM), Table 2 (one row per chain) and the gamma-bound verification report.
localrules:
    tables,


rule tables:
    input:
        sweeps=all_sweeps(),
        controller=controller_files(),
    output:
        **{
            file.replace(".", "_"): report(
                f"{OUT}/tables/{file}",
                caption=f"../report/{file.split('.')[0]}.rst",
                category="Tables",
                labels={"table": file.split(".")[0], "format": file.split(".")[1]},
            )
            for file in PLAN.tables
        },
    log:
        f"logs/{RUN}/tables.log",
    benchmark:
        f"logs/{RUN}/benchmarks/tables.tsv"
    conda:
        CONDA_ENV_FILE
    params:
        out_dir=lambda wildcards, output: os.path.dirname(output[0]),
        gammas=[str(g) for g in config["gammas"]],
        decimals=config["decimals"],
        layer_order=",".join(model_layers()),
        groups=image_group_args(),
    shell:
        "ifmsan report --sweeps {input.sweeps:q} --controller {input.controller:q} --out-dir {params.out_dir:q} --gammas {params.gammas:q}"
        " --decimals {params.decimals:q} --layer-order {params.layer_order:q} {params.groups:q} > {log:q} 2>&1"
