# Paper Figures 2, 4, 5, the layers x windows heatmap, eff_san per layer and knob coverage, per image.
localrules:
    figures,


rule figures:
    input:
        figure_inputs,
    output:
        **{
            f"{name}_png": report(
                f"{OUT}/figures/{{image}}/{name}.png",
                caption=f"../report/{name.split('_coverage_')[0]}.rst",
                category="Figures",
                subcategory="{image}",
                labels={"figure": name, "image": "{image}"},
            )
            for name in PLAN.figures
        },
        **{f"{name}_pdf": f"{OUT}/figures/{{image}}/{name}.pdf" for name in PLAN.figures},
    log:
        f"logs/{RUN}/figures/{{image}}.log",
    benchmark:
        f"logs/{RUN}/benchmarks/figures/{{image}}.tsv"
    priority: job_priority
    conda:
        CONDA_ENV_FILE
    params:
        out_dir=lambda wildcards: f"{OUT}/figures/{wildcards.image}",
        gammas=[str(g) for g in config["gammas"]],
        layer_order=",".join(model_layers()),
    shell:
        "ifmsan figures --sweeps {input:q} --out-dir {params.out_dir:q} --image {wildcards.image:q}"
        " --gammas {params.gammas:q} --layer-order {params.layer_order:q} > {log:q} 2>&1"
