# What the sweeps of an attacked layer and knob hold (attack_sweeps_key), written when it changes. The attacks read
# their sweeps as ancient (an image job rewrites all of its files when any of its settings changes) and this file as
# a plain input, so they rerun exactly when what their sweeps hold changes.
localrules:
    attack_sweeps_key,


rule attack_sweeps_key:
    output:
        f"{OUT}/attacks/{{layer}}/{{knob}}.sweeps.json",
    log:
        f"logs/{RUN}/attacks/{{layer}}/{{knob}}.sweeps.log",
    conda:
        CONDA_ENV_FILE
    params:
        holds=attack_sweeps_key,
    shell:
        "printf '%s\\n' {params.holds:q} > {output:q} 2> {log:q}"


# The adversaries (docs/attacks.md): one job per attacked (layer, knob), so a cluster spreads them; each reads the
# run's sweeps of that layer and knob for n*(gamma). Off when the config has no attacks section.
rule attack:
    input:
        sweeps=attack_sweeps,
        holds=rules.attack_sweeps_key.output[0],
        model=model_inputs,
    output:
        f"{OUT}/attacks/{{layer}}/{{knob}}.nc",
    log:
        f"logs/{RUN}/attacks/{{layer}}/{{knob}}.log",
    benchmark:
        f"logs/{RUN}/benchmarks/attack/{{layer}}/{{knob}}.tsv"
    conda:
        CONDA_ENV_FILE
    threads: lambda wildcards: attack_option("threads")
    resources:
        mem_mb=lambda wildcards: attack_option("mem_mb"),
        runtime=lambda wildcards: attack_option("runtime"),
    params:
        model=attack_model_args,
        hashes=hash_args("extract_hash", "config_hash"),  # the sweeps' (n*(gamma) comes from them)
        values=attack_values,
        gammas=[str(g) for g in attack_option("gammas") or []],
        options=attack_options(),
    shell:
        "ifmsan attack {params.model:q} {params.hashes:q} --layer {wildcards.layer:q} --knob {wildcards.knob:q}"
        " --values {params.values:q} --sweeps {input.sweeps:q} --gammas {params.gammas:q} {params.options:q}"
        " --out {output:q} > {log:q} 2>&1"


# The same adversaries with twice the training images and epochs: a verdict says "holds" only if it holds at both budgets
# and the adaptive server's accuracy moved by less than 0.02 between them (docs/attacks.md).
rule attack_doubled:
    input:
        sweeps=attack_sweeps,
        holds=rules.attack_sweeps_key.output[0],
        model=model_inputs,
    output:
        f"{OUT}/attacks/{{layer}}/{{knob}}.2B.nc",
    log:
        f"logs/{RUN}/attacks/{{layer}}/{{knob}}.2B.log",
    benchmark:
        f"logs/{RUN}/benchmarks/attack_doubled/{{layer}}/{{knob}}.tsv"
    conda:
        CONDA_ENV_FILE
    threads: lambda wildcards: attack_option("threads")
    resources:
        mem_mb=lambda wildcards: attack_option("mem_mb"),
        runtime=lambda wildcards: 2 * attack_option("runtime"),
    params:
        model=attack_model_args,
        hashes=hash_args("extract_hash", "config_hash"),  # the sweeps' (n*(gamma) comes from them)
        values=attack_values,
        gammas=[str(g) for g in attack_option("gammas") or []],
        options=attack_options(factor=2),
    shell:
        "ifmsan attack {params.model:q} {params.hashes:q} --layer {wildcards.layer:q} --knob {wildcards.knob:q}"
        " --values {params.values:q} --sweeps {input.sweeps:q} --gammas {params.gammas:q} {params.options:q}"
        " --out {output:q} > {log:q} 2>&1"


# attack_summary (for each gamma: n*(gamma) and the attack scores there, with a verdict) and the attack figures.
localrules:
    attack_report,


rule attack_report:
    input:
        attacks=attack_files(),
        doubled=attack_files("attack_doubled"),
    output:
        **{
            f"table_{ext}": report(
                f"{OUT}/tables/attack_summary.{ext}",
                caption="../report/attack_summary.rst",
                category="Attacks",
                labels={"table": "attack_summary", "format": ext},
            )
            for ext in ("csv", "md")
        },
        **{
            f"{name}_png": report(
                f"{OUT}/figures/attacks/{name}.png",
                caption=f"../report/attack_{name.split('_')[0]}.rst",
                category="Attacks",
                labels={"figure": name},
            )
            for name in PLAN.attack_figures
        },
        **{f"{name}_pdf": f"{OUT}/figures/attacks/{name}.pdf" for name in PLAN.attack_figures},
    log:
        f"logs/{RUN}/attack_report.log",
    benchmark:
        f"logs/{RUN}/benchmarks/attack_report.tsv"
    conda:
        CONDA_ENV_FILE
    params:
        tables=lambda wildcards, output: os.path.dirname(output.table_csv),
        figures=lambda wildcards, output: os.path.dirname(output[2]),  # the first figure, after the two tables
        layer_order=",".join(model_layers()),
    shell:
        "ifmsan attack-report --attacks {input.attacks:q} --doubled {input.doubled:q} --tables-dir {params.tables:q} --figures-dir {params.figures:q}"
        " --layer-order {params.layer_order:q} > {log:q} 2>&1"
