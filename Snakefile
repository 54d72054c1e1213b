# ifmsan: sanitize CNN input feature maps by sample-and-hold approximation, and reproduce the paper's evaluation.
# Paper reproduction:   snakemake --cores N
# Offline demo:         snakemake --cores N --configfile config/demo.yaml
import os

from snakemake.utils import min_version, validate

from ifmsan.configcheck import check_schema

min_version("9.0")


# The paper reproduction is the default; a --configfile replaces it whole instead of being merged into it.
if not config:

    configfile: "config/config.yaml"



# One line per problem, naming the key, its value and what is allowed; then Snakemake's validate fills in defaults.
check_schema(config, os.path.join(workflow.basedir, "workflow/schemas/config.schema.yaml"))
validate(config, "workflow/schemas/config.schema.yaml")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/fetch.smk"
include: "workflow/rules/train_mini.smk"
include: "workflow/rules/extract.smk"
include: "workflow/rules/sweep.smk"
include: "workflow/rules/chains.smk"
include: "workflow/rules/tables.smk"
include: "workflow/rules/gamma.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/notebooks.smk"


rule all:
    input:
        all_targets(),
    default_target: True
