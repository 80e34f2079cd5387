"""The demo on several seeds: one run is one draw from a wide spread, so a change to the demo is
judged by the mean and spread over seeds, not by one run.

    python bench/demo_seeds.py                              # seeds 0 1 2 of `make demo`'s settings
    python bench/demo_seeds.py --seeds 0 1 2 -- --ldm.objective=flow --sample.sampler=flow_euler
    python bench/demo_seeds.py --reuse --out runs/seeds     # read the reports of an earlier run
    python bench/demo_seeds.py --jobs 2 --autoencoders runs/seeds --out runs/f2 -- <flags>
                                                            # two seeds at a time, each seed's autoencoder reused

`--autoencoders DIR` passes DIR/seed_S/autoencoder.pt to seed S's run, so two settings of the LDM
are compared on the same first stages (the autoencoder's seconds are then not counted). `--jobs 2`
runs two seeds side by side (one thread each): their seconds are then those of a loaded machine.

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


def seed_command(seed: int, out: Path, extra: list[str], autoencoders: Path | None) -> list[str]:
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
    if autoencoders is not None:
        command += ["--autoencoder", str(autoencoders / f"seed_{seed}" / "autoencoder.pt")]
    return command


def run_seeds(seeds: list[int], out: Path, extra: list[str], autoencoders: Path | None, jobs: int) -> None:
    """Run the demo for each seed, `jobs` at a time; stop at the first failure."""
    pending = list(seeds)
    running: list[subprocess.Popen] = []
    while pending or running:
        while pending and len(running) < jobs:
            seed = pending.pop(0)
            command = seed_command(seed, out, extra, autoencoders)
            print("$", " ".join(command), flush=True)
            log = open(out / f"seed_{seed}.log", "w")  # noqa: SIM115 (closed with the process)
            running.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT))
        finished = running.pop(0)
        if finished.wait() != 0:
            for process in running:
                process.terminate()
            raise SystemExit(f"{' '.join(finished.args)} failed with exit {finished.returncode}; see its log in {out}")


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
    parser.add_argument("--jobs", type=int, default=1, help="seeds run side by side (one thread each)")
    parser.add_argument("--autoencoders", default=None, help="reuse DIR/seed_S/autoencoder.pt for seed S")
    parser.add_argument("extra", nargs="*", help="flags for every demo run, after --")
    args = parser.parse_args()
    out = Path(args.out)
    if not args.reuse:
        out.mkdir(parents=True, exist_ok=True)
        autoencoders = Path(args.autoencoders) if args.autoencoders else None
        run_seeds(args.seeds, out, args.extra, autoencoders, args.jobs)
    reports = {}
    for seed in args.seeds:
        path = out / f"seed_{seed}" / "report.json"
        if not path.is_file():
            print(f"no report at {path}: run without --reuse first")
            continue
        reports[seed] = json.loads(path.read_text())
    if not reports:
        return
    print(f"\nheld-out accuracy (%), Frechet distance and seconds per stage; {len(reports)} seeds")
    print(table({seed: row(report) for seed, report in reports.items()}))


if __name__ == "__main__":
    main()
