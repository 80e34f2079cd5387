"""The demo on several seeds: one run is one draw from a wide spread, so a change to the demo is
judged by the mean and spread over seeds, not by one run.

    python bench/demo_seeds.py                              # seeds 0 1 2 of `make demo`'s settings
    python bench/demo_seeds.py --seeds 0 1 2 -- --ldm.objective=flow --sample.sampler=flow_euler
    python bench/demo_seeds.py --reuse --out runs/seeds     # read the reports of an earlier run

Each seed runs `python -m minildm demo --seed S --out OUT/seed_S` (extra flags after `--` go to
every run) and the table gives, per seed and as mean +- standard deviation: the judge's accuracy
on the held-out prompts (shape, colour, size, position), shape through the autoencoder alone,
the Frechet distance, and the seconds of each stage.
"""

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ATTRIBUTES = ("shape", "colour", "size", "position")


def run_seed(seed: int, out: Path, extra: list[str]) -> dict:
    folder = out / f"seed_{seed}"
    command = [
        sys.executable,
        "-m",
        "minildm",
        "demo",
        "--seed",
        str(seed),
        "--out",
        str(folder),
        "--overwrite",
        *extra,
    ]
    print("$", " ".join(command), flush=True)
    subprocess.run(command, check=True)
    return json.loads((folder / "report.json").read_text())


def row(report: dict) -> dict[str, float]:
    values = {name: 100 * report["accuracy"][name] for name in ATTRIBUTES}
    values["shape through the autoencoder"] = 100 * report["autoencoder_reconstruction_accuracy"]["shape"]
    values["Frechet"] = report["frechet_distance"]
    values.update({f"{stage} s": seconds for stage, seconds in report["seconds"].items()})
    values["total s"] = sum(report["seconds"].values())
    return values


def table(rows: dict[int, dict[str, float]]) -> str:
    columns = list(next(iter(rows.values())))
    lines = ["| seed | " + " | ".join(columns) + " |", "| --- |" + " ---: |" * len(columns)]
    lines += [f"| {seed} | " + " | ".join(f"{values[c]:.1f}" for c in columns) + " |" for seed, values in rows.items()]
    if len(rows) > 1:
        cells = []
        for c in columns:
            numbers = [values[c] for values in rows.values()]
            cells.append(f"{statistics.mean(numbers):.1f} +- {statistics.stdev(numbers):.1f}")
        lines.append("| mean +- sd | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default="runs/seeds")
    parser.add_argument("--reuse", action="store_true", help="read OUT/seed_S/report.json instead of running")
    parser.add_argument("extra", nargs="*", help="flags for every demo run, after --")
    args = parser.parse_args()
    out = Path(args.out)
    reports = {}
    for seed in args.seeds:
        path = out / f"seed_{seed}" / "report.json"
        if args.reuse:
            if not path.is_file():
                print(f"no report at {path}: run without --reuse first")
                continue
            reports[seed] = json.loads(path.read_text())
        else:
            reports[seed] = run_seed(seed, out, args.extra)
    if not reports:
        return
    print(f"\nheld-out accuracy (%), Frechet distance and seconds per stage; {len(reports)} seeds")
    print(table({seed: row(report) for seed, report in reports.items()}))


if __name__ == "__main__":
    main()
