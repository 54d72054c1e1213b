"""Execute one inspection notebook on a run's results and save the executed copy (a few lines, no logic)."""

import os
import sys

import nbformat
from nbclient import NotebookClient

smk = snakemake  # noqa: F821 (injected by Snakemake)
sys.stderr = sys.stdout = open(smk.log[0], "w")
os.environ["IFMSAN_RESULTS"] = os.path.abspath(smk.params.results)
notebook = nbformat.read(smk.input.notebook, as_version=4)
folder = os.path.dirname(os.path.abspath(smk.input.notebook))
NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": folder}}).execute()
nbformat.write(notebook, smk.output[0])
