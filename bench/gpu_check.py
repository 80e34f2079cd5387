"""The prepared check for whoever has a GPU (`make gpu-check`): one script, one table.

Runs, in order, stopping at the first error:
1. the demo in the `gpu` preset (`python -m minildm demo --preset gpu`), which trains the
   laptop models longer: the LDM 7,200 steps (laptop: 3,000) on twice the batch, the first
   stage 8,000 (4,000);
2. every notebook in the gpu tier (MINILDM_TIER=gpu), executed by nbconvert;
3. bench/unet_speed.py and bench/why_latent.py on cuda.
Then prints one table: each item, its wall time, and the result line it printed.

    python bench/gpu_check.py                # everything
    python bench/gpu_check.py --skip-notebooks

On a machine without CUDA it says so and exits with code 2 before running anything.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def run(name: str, command: list[str], env: dict | None = None) -> tuple[float, str]:
    """Run `command`; returns (seconds, its last output line); exits at the first failure."""
    print(f"== {name}: {' '.join(command)}", flush=True)
    start = time.perf_counter()
    result = subprocess.run(command, cwd=REPO, env={**os.environ, **(env or {})}, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    print(result.stdout[-4000:], result.stderr[-2000:], sep="\n", flush=True)
    if result.returncode != 0:
        print(f"gpu-check: {name} failed with exit code {result.returncode}; stopping here", file=sys.stderr)
        sys.exit(1)
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    return seconds, lines[-1][:100] if lines else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--skip-notebooks", action="store_true")
    parser.add_argument("--out", default="runs/gpu_check")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("gpu-check needs a CUDA GPU, and torch sees none here", file=sys.stderr)
        sys.exit(2)
    out = Path(args.out)
    rows = []
    python = sys.executable
    seconds, _ = run("demo, gpu preset", [python, "-m", "minildm", "demo", "--preset", "gpu", "--overwrite",
                                          "--out", str(out / "demo")])  # fmt: skip
    accuracy = json.loads((out / "demo" / "report.json").read_text())["accuracy"]
    rows.append(("demo (gpu preset)", seconds, ", ".join(f"{k} {100 * v:.1f}%" for k, v in accuracy.items())))
    if not args.skip_notebooks:
        for notebook in sorted((REPO / "notebooks").glob("[0-9]*.ipynb")):
            execute = ["--to", "notebook", "--execute", "--ExecutePreprocessor.timeout=-1"]
            command = [
                python,
                "-m",
                "jupyter",
                "nbconvert",
                *execute,
                "--output-dir",
                str(out / "notebooks"),
                str(notebook),
            ]
            seconds, _ = run(notebook.name, command, env={"MINILDM_TIER": "gpu"})
            rows.append((notebook.name, seconds, "executed"))
    for script in ("unet_speed.py", "why_latent.py"):
        seconds, last = run(script, [python, f"bench/{script}", "--device", "cuda"])
        rows.append((script, seconds, last))
    print(f"\n{torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    print("| item | seconds | result |\n| --- | ---: | --- |")
    for name, seconds, result in rows:
        print(f"| {name} | {seconds:.0f} | {result} |")
    print(f"| total | {sum(row[1] for row in rows):.0f} | |")


if __name__ == "__main__":
    main()
