"""The course's one switch and the models its notebooks share.

Every notebook starts with `course = start()`: it reads the tier from the environment, once,
here and nowhere else, and prints the tier, the commit and the time, so an executed notebook
records what it ran on. The tiers are the presets of minildm/config.py:

- `quick`: seconds; CI runs every notebook so (checks the plumbing, the pictures are noise);
- `laptop`: real results in at most 10 minutes a notebook on 2 CPU cores (`make notebooks`);
- `gpu`: one GPU, the same models trained longer.

MINILDM_TIER=quick|laptop|gpu picks one (laptop if unset); MINILDM_QUICK=1 is the same as quick.

Trained models are shared, so that no notebook trains what another already did: notebook 04
trains the first stage into runs/course/<tier>/ and 06 and 07 load it from there; 06 trains
the text-to-image LDM there as well, and 07 and 09-11 load it. In the laptop tier the models of
`make demo` (runs/demo/autoencoder.pt and ldm.pt) are used when present and trained as the tier
trains them: `make demo` trains the laptop preset, so its models are taken, and a demo run with
other flags (another recipe, another number of steps) is passed over. The quick tier shares
nothing: every notebook trains its own seconds-long models in memory.
"""

import os
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import torch

from minildm.autoencoder import FirstStage, load_autoencoder
from minildm.checkpoint import load_checkpoint
from minildm.config import Config, preset, resolve, select_device
from minildm.ldm import LatentDiffusion, load_ldm
from minildm.metrics import (
    AttributeClassifier,
    ClassifierTrainConfig,
    load_or_train_shapes_classifier,
)
from minildm.train.stages import train_first_stage, train_text_ldm

TIERS = ("quick", "laptop", "gpu")
REPO = Path(__file__).resolve().parents[1]


def tier() -> str:
    """The tier asked for by MINILDM_TIER (or MINILDM_QUICK=1); laptop when neither is set."""
    if os.environ.get("MINILDM_QUICK", "0") == "1":
        return "quick"
    name = os.environ.get("MINILDM_TIER", "laptop")
    if name not in TIERS:
        raise ValueError(f"MINILDM_TIER must be one of {', '.join(TIERS)}, got {name!r}")
    return name


def commit() -> str:
    """The git commit of this checkout, or "unknown"; "+changes" when tracked files outside notebooks/
    differ from it (executing the notebooks in place rewrites notebooks/, not the code they run)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        )
        status = ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)notebooks"]
        dirty = subprocess.run(status, cwd=REPO, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")


@dataclass
class Course:
    """What a notebook needs to know about its run: the tier, its preset, the device, the folders."""

    tier: str
    config: Config
    device: str
    started: float = field(default_factory=time.perf_counter)

    @property
    def quick(self) -> bool:
        return self.tier == "quick"

    def pick(self, quick, laptop, gpu=None):
        """The value for this tier (`gpu` defaults to `laptop`'s)."""
        return {"quick": quick, "laptop": laptop, "gpu": laptop if gpu is None else gpu}[self.tier]

    @property
    def cache(self) -> Path | None:
        """runs/course/<tier>/: the models notebooks share (None in the quick tier: nothing is shared)."""
        return None if self.quick else REPO / "runs" / "course" / self.tier

    def out_dir(self, notebook: str) -> Path:
        """runs/<notebook>/ for a notebook's own pictures."""
        path = REPO / "runs" / notebook
        path.mkdir(parents=True, exist_ok=True)
        return path

    def wall_time(self) -> None:
        """Print the seconds since `start()`: the last line of every notebook."""
        seconds = time.perf_counter() - self.started
        print(f"wall time: {seconds:.0f} s (tier {self.tier}, {torch.get_num_threads()} threads)")


def start(overrides: dict[str, object] | None = None) -> Course:
    """Read the tier, build its preset (with `overrides`, as `resolve` takes them), seed torch,
    set the threads, and print what this run is: tier, commit, device, date."""
    name = tier()
    config = resolve(preset(name), overrides or {})
    device = "cpu" if name == "quick" else select_device(config.device)
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    plt.rcParams["figure.dpi"] = 72  # inline PNGs: an executed notebook stays well under 1.5 MB
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(f"tier {name} | commit {commit()} | device {device} | torch {torch.__version__} | {date}")
    return Course(name, config, device)


def demo_file(course: Course, name: str) -> Path | None:
    """runs/demo/<name> when the laptop tier runs and `make demo` has written it."""
    path = REPO / "runs" / "demo" / name
    return path if course.tier == "laptop" and path.is_file() else None


def cached_file(course: Course, name: str, misfit) -> Path | None:
    """runs/demo/<name> (laptop tier, after `make demo`), else the course cache's <name>: the first
    that was trained as this tier trains it. `misfit(path)` says why a file is not (None: it is)."""
    candidates = [demo_file(course, name), course.cache / name if course.cache is not None else None]
    for path in candidates:
        if path is None or not path.is_file():
            continue
        why_not = misfit(course, path)
        if why_not is None:
            return path
        print(f"{path.relative_to(REPO)} holds {why_not}: not used")
    return None


def autoencoder_misfit(course: Course, path: Path) -> str | None:
    recipe = load_checkpoint(path).get("training", {}).get("train_config")
    if load_autoencoder(path).config != course.config.autoencoder or recipe != asdict(course.config.autoencoder_train):
        return "another autoencoder than this tier's preset, or one trained otherwise"
    return None


def ldm_misfit(course: Course, path: Path) -> str | None:
    ldm = load_ldm(path)
    steps = len(load_checkpoint(path)["training"]["history"]["loss"])
    same_model = ldm.config.unet == course.config.ldm.unet and ldm.autoencoder.config == course.config.autoencoder
    if not same_model or steps != course.config.train.steps:
        return (
            f"another LDM than this tier's preset ({steps} training steps, the tier trains {course.config.train.steps})"
        )
    return None


def ldm_file(course: Course) -> Path | None:
    """The tier's trained text-to-image LDM: runs/demo/ldm.pt (laptop tier, after `make demo`),
    else the course cache's ldm.pt (written by notebook 06), whichever was trained as the tier
    trains it; else None."""
    return cached_file(course, "ldm.pt", ldm_misfit)


def first_stage(course: Course) -> FirstStage:
    """The tier's autoencoder: from `make demo`, else from the course cache, if trained as the tier
    trains it; else trained now (and cached). Notebook 04 calls it first; 06 and 07 find it there."""
    found = cached_file(course, "autoencoder.pt", autoencoder_misfit)
    if found is not None:
        print(f"autoencoder loaded from {found.relative_to(REPO)}")
        return load_autoencoder(found).to(course.device)
    start_time = time.perf_counter()
    autoencoder = train_first_stage(course.config, course.device, course.cache, overwrite=True)
    print(f"autoencoder trained in {time.perf_counter() - start_time:.0f} s")
    return autoencoder.to(course.device)


def text_ldm(course: Course, autoencoder: FirstStage) -> tuple[LatentDiffusion, dict[str, list[float]]]:
    """The tier's text-to-image LDM (EMA weights) and its loss history: from `make demo`, else from
    the course cache, if trained as the tier trains it; else trained now on `autoencoder` (and cached)."""
    found = ldm_file(course)
    if found is not None:
        history = load_checkpoint(found)["training"]["history"]
        print(f"LDM loaded from {found.relative_to(REPO)} ({len(history['loss'])} training steps)")
        return load_ldm(found, device=course.device), history
    start_time = time.perf_counter()
    ldm, history = train_text_ldm(course.config, autoencoder, course.device, course.cache, overwrite=True)
    print(f"LDM trained in {time.perf_counter() - start_time:.0f} s")
    if course.cache is not None:  # the EMA weights, as sampling sees them
        ldm = load_ldm(course.cache / "ldm.pt", device=course.device)
    return ldm.eval(), history


def judge(course: Course) -> AttributeClassifier:
    """The attribute classifier that reads shape, colour, size and position back from an image
    (minildm/metrics/caption_match.py), cached under data/judges/: the standard one, or in the
    quick tier one trained for a few steps."""
    steps = course.config.eval.judge_steps
    train_config = ClassifierTrainConfig(steps=steps) if steps else None
    return load_or_train_shapes_classifier(course.config.data.size, course.device, train_config)
