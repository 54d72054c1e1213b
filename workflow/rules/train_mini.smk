# alexnet_mini: the offline stand-in for BVLC AlexNet, trained by the workflow itself on generated shapes (only when
# model.weights is "train": then the model-using jobs ask for its weights).
rule train_mini:
    output:
        weights=f"{OUT}/model/alexnet_mini.pt",
        checksum=f"{OUT}/model/alexnet_mini.pt.sha256",
        metrics=report(
            f"{OUT}/model/metrics.json",
            caption="../report/train_mini.rst",
            category="Model",
            labels={"what": "alexnet_mini training metrics"},
        ),
    log:
        f"logs/{RUN}/train_mini.log",
    benchmark:
        f"logs/{RUN}/benchmarks/train_mini.tsv"
    conda:
        CONDA_ENV_FILE
    threads: config["train_mini"]["threads"]
    resources:
        mem_mb=3000,
        runtime=30,
    params:
        out_dir=lambda wildcards, output: os.path.dirname(output.weights),
        epochs=config["train_mini"]["epochs"],
        train=config["train_mini"]["train_per_class"],
        test=config["train_mini"]["test_per_class"],
        seed=config["train_mini"]["seed"],
        min_accuracy=config["train_mini"]["min_accuracy"],
        threads=config["train_mini"]["threads"],  # a value, not {threads}: the weights depend on it, not on --cores
    shell:
        "ifmsan train-mini --out {params.out_dir:q} --epochs {params.epochs:q} --train-per-class {params.train:q}"
        " --test-per-class {params.test:q} --seed {params.seed:q} --threads {params.threads:q}"
        " --min-accuracy {params.min_accuracy:q} > {log:q} 2>&1"
