# Paper Table 1 (one row per IFM), Table 2 (one row per chain) and the gamma-bound verification report.
localrules:
    tables,


rule tables:
    input:
        all_sweeps(),
    output:
        **{
            f"{name}_{ext}": report(
                f"{OUT}/tables/{name}.{ext}",
                caption=f"../report/{name}.rst",
                category="Tables",
                labels={"table": name, "format": ext},
            )
            for name, ext in table_files()
        },
    log:
        f"logs/{RUN}/tables.log",
    params:
        out_dir=lambda wildcards, output: os.path.dirname(output[0]),
        gammas=[str(g) for g in config["gammas"]],
        decimals=config["decimals"],
        layer_order=",".join(model_layers()),
    conda:
        "../../environment.yml"
    shell:
        "ifmsan report --sweeps {input:q} --out-dir {params.out_dir:q} --gammas {params.gammas:q}"
        " --decimals {params.decimals:q} --layer-order {params.layer_order:q} > {log:q} 2>&1"
