# The inspection notebooks, executed on this run's results (the executed copies are outputs; the sources stay clean).
# Local: they read every result of the run, like the tables and figures.
localrules:
    notebook,


rule notebook:
    input:
        notebook=os.path.join(workflow.basedir, "notebooks", "{notebook}.ipynb"),
        ifms=expand(IFMS_FILE, image=IMAGES),
        sweeps=sweep_files(),
        attacks=lambda wildcards: attack_files() if wildcards.notebook == "attacks" else [],
        certify=lambda wildcards: rules.certify_report.output if wildcards.notebook == "certify" else [],
    output:
        f"{OUT}/notebooks/{{notebook}}.ipynb",
    log:
        f"logs/{RUN}/notebooks/{{notebook}}.log",
    benchmark:
        f"logs/{RUN}/benchmarks/notebook/{{notebook}}.tsv"
    wildcard_constraints:
        notebook="|".join(PLAN.notebooks),
    conda:
        CONDA_ENV_FILE
    params:
        results=lambda wildcards, input: os.path.dirname(os.path.dirname(input.ifms[0])),
    script:
        "../scripts/execute_notebook.py"
