# ifmsan: sanitize CNN input feature maps by sample-and-hold approximation, and reproduce the paper's evaluation.
# Paper reproduction:   snakemake --cores N
# Offline demo:         snakemake --cores N --configfile config/demo.yaml
import os

from snakemake.utils import min_version, validate

from ifmsan.workflow.configcheck import check_config
from ifmsan.workflow.schema import check_schema

min_version("9.0")


# The paper reproduction is the default config; --config KEY=VALUE adjusts it. A --configfile replaces it whole (as
# --replace-workflow-config would, which is therefore optional) instead of being merged into it: Snakemake 9 does not
# forward --replace-workflow-config to the jobs it spawns on a cluster, so a merge there would plan a different run.
if not workflow.config_settings.configfiles:

    configfile: os.path.join(workflow.basedir, "config", "config.yaml")


# In this order: one line per schema problem, naming the key, its value and what is allowed; then Snakemake's validate
# fills in the schema's defaults; then every problem the schema cannot state, before Snakemake plans a job (a dry run
# too), with files already on disk verified against their checksums. `device: cuda` is checked once the executor is
# known (check_device in workflow/rules/common.smk). A cluster job's own Snakemake (remote mode) skips the hashing:
# the main process did it before submitting, and the job's `ifmsan` command checks each file it reads itself.
check_schema(config, os.path.join(workflow.basedir, "workflow/schemas/config.schema.yaml"), files=workflow.configfiles)
validate(config, "workflow/schemas/config.schema.yaml")
check_config(config, files=not workflow.remote_exec)


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/fetch.smk"
include: "workflow/rules/train_mini.smk"
include: "workflow/rules/image.smk"
include: "workflow/rules/tables.smk"
include: "workflow/rules/attacks.smk"
include: "workflow/rules/certify.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/notebooks.smk"


rule all:
    default_target: True
    input:
        all_targets(),
