"""Execute one notebook top to bottom (used by test_notebooks.py in a child
process, so the child can run without the capture privilege)."""

import sys

import nbformat
from nbclient import NotebookClient

path, workdir = sys.argv[1], sys.argv[2]
notebook = nbformat.read(path, as_version=4)
NotebookClient(notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": workdir}}).execute()
for cell in notebook.cells:
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            sys.stdout.write(output["text"])
