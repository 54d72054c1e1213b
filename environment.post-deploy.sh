#!/usr/bin/env bash
# Run by Snakemake (--sdm conda) inside the environment it has just built from its copy of environment.yml, in the
# working directory Snakemake runs in: installs ifmsan itself, editable, from that checkout, or from IFMSAN_CHECKOUT
# when set (snakemake --directory elsewhere: export IFMSAN_CHECKOUT=/path/to/checkout first).
# By hand: conda env create -f environment.yml && conda activate ifmsan && pip install --no-deps -e .
set -euo pipefail
checkout="${IFMSAN_CHECKOUT:-$PWD}"
if [ -z "${IFMSAN_CHECKOUT:-}" ] && ! grep -qs '^name = "ifmsan"$' "$checkout/pyproject.toml"; then
    echo "environment.post-deploy.sh: $checkout is not the ifmsan checkout; run snakemake from it or set IFMSAN_CHECKOUT to it" >&2
    exit 1
fi
python -m pip install --no-deps -e "$checkout"
