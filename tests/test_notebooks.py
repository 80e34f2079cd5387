"""The course: every notebook runs top to bottom in the quick tier, and the committed notebooks
carry the outputs of a real run.

A notebook starts with `course = start()` (minildm/course.py), which reads the tier
(MINILDM_TIER=quick|laptop|gpu, or MINILDM_QUICK=1) and prints "tier ... | commit ..." as the
first output, so an executed notebook records what it ran on. `make notebooks` executes them in
the laptop tier and writes the outputs into the committed files. The exercises' solutions
(notebooks/solutions/) run in the quick tier too.
"""

import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

FOLDER = Path(__file__).parent.parent / "notebooks"
NOTEBOOKS = sorted(FOLDER.glob("*.ipynb"))
SOLUTIONS = sorted((FOLDER / "solutions").glob("*.ipynb"))
MAX_BYTES = 1_500_000  # PNG figures keep a notebook with its outputs small enough to read on the web
RUN_LINE = re.compile(r"tier (quick|laptop|gpu) \| commit (\S+)")


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS + SOLUTIONS, ids=[p.name for p in NOTEBOOKS + SOLUTIONS])
def test_notebook_runs_in_the_quick_tier(path, monkeypatch):
    monkeypatch.setenv("MINILDM_TIER", "quick")
    monkeypatch.delenv("MINILDM_QUICK", raising=False)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    notebook = nbformat.read(path, as_version=4)
    assert any(c.cell_type == "code" for c in notebook.cells), f"{path.name} has no code"
    # run from the notebook's folder so relative paths behave as they do for a student
    client = NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute()
    first = next(c for c in notebook.cells if c.cell_type == "code")
    assert "tier quick" in stdout(first), f"{path.name}: its first code cell must call minildm.course.start()"


def stdout(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_committed_notebook_has_its_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert code and all(c.get("execution_count") for c in code), (
        f"{path.name}: not executed top to bottom (run `make notebooks`)"
    )
    errors = [o for c in code for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, f"{path.name} holds an error output: {errors[0].get('ename')}: {errors[0].get('evalue')}"
    run = RUN_LINE.search(stdout(code[0]))
    assert run, f"{path.name}: the first cell's output must say the tier and the commit (minildm.course.start())"
    assert run.group(2) != "unknown", f"{path.name} was executed outside a git checkout: no commit recorded"
    assert "wall time:" in stdout(code[-1]), f"{path.name}: the last cell must print the wall time (course.wall_time())"
    assert path.stat().st_size <= MAX_BYTES, (
        f"{path.name} is {path.stat().st_size / 1e6:.1f} MB, more than {MAX_BYTES / 1e6} MB"
    )


def test_there_are_notebooks():
    assert NOTEBOOKS, "notebooks/ is empty"
    assert SOLUTIONS, "notebooks/solutions/ is empty"
