# Certified sanitization (docs/certify.md): a calibration std per layer, the Fisher-information maps per (image, layer),
# the adversaries per (layer, knob, scale) at the attacker's budget B and 2B, then the tables and figures. Off when the
# config has no certify section.
rule calibrate:
    input:
        model=model_inputs,
    output:
        f"{OUT}/certify/calibration/{{layer}}.json",
    log:
        f"logs/{RUN}/certify/calibrate/{{layer}}.log",
    benchmark:
        f"logs/{RUN}/benchmarks/calibrate/{{layer}}.tsv"
    conda:
        CONDA_ENV_FILE
    threads: lambda wildcards: certify_option("threads")
    resources:
        mem_mb=lambda wildcards: certify_option("mem_mb"),
        runtime=lambda wildcards: certify_option("runtime"),
    params:
        model=attack_model_args,
        hashes=hash_args("extract_hash"),  # the model only: no sweep setting reruns a certify job
        n_images=lambda wildcards: certify_option("calibration_images"),
        seed=lambda wildcards: certify_option("seed"),
    shell:
        "ifmsan calibrate {params.model:q} {params.hashes:q} --layer {wildcards.layer:q}"
        " --n-images {params.n_images:q} --seed {params.seed:q} --out {output:q} > {log:q} 2>&1"


rule certify_maps:
    input:
        image_input,
        model_inputs,
    output:
        f"{OUT}/certify/maps/{{layer}}/{{image}}.nc",
    log:
        f"logs/{RUN}/certify/maps/{{layer}}/{{image}}.log",
    benchmark:
        f"logs/{RUN}/benchmarks/certify_maps/{{layer}}/{{image}}.tsv"
    conda:
        CONDA_ENV_FILE
    threads: lambda wildcards: certify_option("threads")
    resources:
        mem_mb=lambda wildcards: certify_option("mem_mb"),
        runtime=lambda wildcards: certify_option("runtime"),
    params:
        model=attack_model_args,
        hashes=hash_args("extract_hash"),  # the model only: no sweep setting reruns a certify job
        image=certify_image_args,
        windows=lambda wildcards: ",".join(str(w) for w in certify_option("windows")),
        resolutions=lambda wildcards: f"{certify_option('resolution')},full",
        probes=lambda wildcards: certify_option("probes"),
        seed=lambda wildcards: certify_option("seed"),
    shell:
        "ifmsan certify {params.model:q} {params.hashes:q} {params.image:q} --image-id {wildcards.image:q}"
        " --layer {wildcards.layer:q} --windows {params.windows:q} --resolutions {params.resolutions:q}"
        " --probes {params.probes:q} --seed {params.seed:q} --out {output:q} > {log:q} 2>&1"


rule certify_attack:
    input:
        model=model_inputs,
        calibration=f"{OUT}/certify/calibration/{{layer}}.json",
    output:
        f"{OUT}/certify/attacks/{{layer}}/{{knob}}/{{setting}}_{{budget}}.nc",
    log:
        f"logs/{RUN}/certify/attacks/{{layer}}/{{knob}}/{{setting}}_{{budget}}.log",
    benchmark:
        f"logs/{RUN}/benchmarks/certify_attack/{{layer}}/{{knob}}/{{setting}}_{{budget}}.tsv"
    wildcard_constraints:
        knob="hold_gaussian|gaussian|laplace",
        setting="s[0-9.e+-]+|scales",
        budget="b1|b2",
    conda:
        CONDA_ENV_FILE
    threads: lambda wildcards: certify_option("threads")
    resources:
        mem_mb=lambda wildcards: certify_option("mem_mb"),
        runtime=lambda wildcards: certify_option("runtime"),
    params:
        model=attack_model_args,
        hashes=hash_args("extract_hash"),  # the model only: no sweep setting reruns a certify job
        values=certify_attack_values,
        knob=certify_knob_args,
        options=certify_attack_options,
    shell:
        "ifmsan attack {params.model:q} {params.hashes:q} --layer {wildcards.layer:q} --knob {wildcards.knob:q}"
        " --calibration {input.calibration:q} {params.knob:q} --values {params.values:q} {params.options:q}"
        " --out {output:q} > {log:q} 2>&1"


# The certificate per (image, layer, n, sigma), certified_summary (the settings that meet gamma and each target against
# every attacker, at both budgets) and one certificate figure per layer.
localrules:
    certify_report,


rule certify_report:
    input:
        maps=certify_map_files(),
        calibration=certify_calibration_files(),
        attacks=certify_attack_files(),
    output:
        **{
            f"summary_{ext}": report(
                f"{OUT}/tables/certified_summary.{ext}",
                caption="../report/certified_summary.rst",
                category="Certificate",
                labels={"table": "certified_summary", "format": ext},
            )
            for ext in ("csv", "md")
        },
        **{
            f"{name}_png": report(
                f"{OUT}/figures/certify/{name}.png",
                caption="../report/certificate_figure.rst",
                category="Certificate",
                labels={"figure": name},
            )
            for name in PLAN.certify_figures
        },
        **{f"{name}_pdf": f"{OUT}/figures/certify/{name}.pdf" for name in PLAN.certify_figures},
        certificate=report(
            f"{OUT}/tables/certificate.csv",
            caption="../report/certificate.rst",
            category="Certificate",
            labels={"table": "certificate", "format": "csv"},
        ),
        certify_attacks=report(
            f"{OUT}/tables/certify_attacks.csv",
            caption="../report/certify_attacks.rst",
            category="Certificate",
            labels={"table": "certify_attacks", "format": "csv"},
        ),
    log:
        f"logs/{RUN}/certify_report.log",
    benchmark:
        f"logs/{RUN}/benchmarks/certify_report.tsv"
    conda:
        CONDA_ENV_FILE
    params:
        tables=lambda wildcards, output: os.path.dirname(output.certificate),
        figures=lambda wildcards, output: os.path.dirname(getattr(output, f"{PLAN.certify_figures[0]}_png")),
        knobs=lambda wildcards: ",".join(certify_option("knobs")),
        scales=lambda wildcards: ",".join(repr(float(s)) for s in certify_option("scales")),
        gammas=lambda wildcards: [str(g) for g in certify_option("gammas")],
        psnr=lambda wildcards: [str(p) for p in certify_option("psnr_targets")],
    shell:
        "ifmsan certify-report --maps {input.maps:q} --calibration {input.calibration:q} --attacks {input.attacks:q}"
        " --knobs {params.knobs:q} --scales {params.scales:q} --gammas {params.gammas:q} --psnr-targets {params.psnr:q}"
        " --tables-dir {params.tables:q} --figures-dir {params.figures:q} > {log:q} 2>&1"
