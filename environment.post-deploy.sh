#!/usr/bin/env bash
# Run by Snakemake (--sdm conda) inside the environment it has just built from its copy of environment.yml: installs
# ifmsan itself, editable, from the checkout whose workflow asked for the environment (IFMSAN_CHECKOUT, set by
# workflow/rules/common.smk). By hand: conda env create -f environment.yml && conda activate ifmsan && pip install --no-deps -e .
set -euo pipefail
: "${IFMSAN_CHECKOUT:?is unset: this script is run by snakemake --sdm conda (workflow/rules/common.smk sets it)}"
python -m pip install --no-deps -e "$IFMSAN_CHECKOUT"
