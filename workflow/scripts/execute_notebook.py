"""Execute one inspection notebook on a run's results and save the executed copy (a few lines, no logic).

Reruns give the same bytes: the kernel runs in the workdir on a relative results path (no absolute path in the
outputs), no execution timestamps are recorded, and the copy is written atomically.
"""

import os
import sys

import nbformat
from nbclient import NotebookClient

from ifmsan._shared.atomic import atomic_path

smk = snakemake  # noqa: F821 (injected by Snakemake)
sys.stderr = sys.stdout = open(smk.log[0], "w")  # noqa: SIM115 (the log stays open for the whole script)
workdir = os.getcwd()
os.environ["IFMSAN_RESULTS"] = os.path.relpath(os.path.abspath(smk.params.results), workdir)
notebook = nbformat.read(smk.input.notebook, as_version=4)
client = NotebookClient(
    notebook, timeout=600, kernel_name="python3", record_timing=False, resources={"metadata": {"path": workdir}}
)
client.execute()
for cell in notebook.cells:
    cell.metadata.pop("execution", None)  # timestamps, should a kernel or nbclient version record them anyway
with atomic_path(smk.output[0], suffix=".part.ipynb") as tmp:
    nbformat.write(notebook, str(tmp))
