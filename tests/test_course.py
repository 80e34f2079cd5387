"""The course's model cache (minildm/course.py): a notebook reuses the tier's autoencoder and LDM
only when they were trained as the tier trains them, so a model trained otherwise (a `make demo`
run with other flags, an earlier preset) never stands in for the tier's own."""

import shutil

import pytest

from minildm import course as course_module
from minildm.config import Config, preset, resolve
from minildm.course import Course, first_stage, ldm_file, text_ldm


@pytest.fixture
def laptop_course(tmp_path, monkeypatch):
    """A course that caches like the laptop tier, under tmp_path, with the quick tier's sizes."""
    monkeypatch.setattr(course_module, "REPO", tmp_path)
    return Course("laptop", preset("quick"), "cpu")


def test_the_cached_ldm_is_reused_only_with_the_tiers_training_steps(laptop_course, tmp_path, capsys):
    autoencoder = first_stage(laptop_course)
    _, history = text_ldm(laptop_course, autoencoder)
    assert len(history["loss"]) == laptop_course.config.train.steps
    assert "LDM trained" in capsys.readouterr().out

    _, again = text_ldm(laptop_course, autoencoder)
    assert "LDM loaded from runs/course/laptop/ldm.pt (3 training steps)" in capsys.readouterr().out
    assert again["loss"] == history["loss"]

    longer = Course("laptop", resolve(preset("quick"), {"train.steps": 4}), "cpu")
    _, retrained = text_ldm(longer, autoencoder)
    out = capsys.readouterr().out
    assert "3 training steps, the tier trains 4" in out and "LDM trained" in out
    assert len(retrained["loss"]) == 4

    # a `make demo` model is taken first, under the same rule
    (tmp_path / "runs" / "demo").mkdir(parents=True)
    shutil.copy(tmp_path / "runs" / "course" / "laptop" / "ldm.pt", tmp_path / "runs" / "demo" / "ldm.pt")
    _, from_demo = text_ldm(longer, autoencoder)
    assert "LDM loaded from runs/demo/ldm.pt (4 training steps)" in capsys.readouterr().out
    assert from_demo["loss"] == retrained["loss"]
    text_ldm(laptop_course, autoencoder)
    assert "runs/demo/ldm.pt holds another LDM" in capsys.readouterr().out
    # a demo model trained otherwise does not hide the tier's own cached one
    _, cached = text_ldm(laptop_course, autoencoder)
    out = capsys.readouterr().out
    assert "runs/demo/ldm.pt holds another LDM" in out
    assert "LDM loaded from runs/course/laptop/ldm.pt (3 training steps)" in out and "LDM trained" not in out
    assert ldm_file(laptop_course) == tmp_path / "runs" / "course" / "laptop" / "ldm.pt"


def test_the_cached_autoencoder_is_reused_only_with_the_tiers_recipe(laptop_course, tmp_path, capsys):
    first_stage(laptop_course)
    assert "autoencoder trained" in capsys.readouterr().out
    first_stage(laptop_course)
    assert "autoencoder loaded from runs/course/laptop/autoencoder.pt" in capsys.readouterr().out
    # the same architecture trained on another batch size is not the tier's first stage
    bigger_batch = Course("laptop", resolve(preset("quick"), {"autoencoder_train.batch_size": 8}), "cpu")
    first_stage(bigger_batch)
    out = capsys.readouterr().out
    assert "or one trained otherwise: not used" in out and "autoencoder trained" in out
    # nor is a `make demo` autoencoder trained otherwise taken over the tier's cached one
    (tmp_path / "runs" / "demo").mkdir(parents=True)
    shutil.copy(
        tmp_path / "runs" / "course" / "laptop" / "autoencoder.pt", tmp_path / "runs" / "demo" / "autoencoder.pt"
    )
    first_stage(laptop_course)  # the cache is now retrained on batch 16
    first_stage(laptop_course)
    out = capsys.readouterr().out
    assert "runs/demo/autoencoder.pt holds another autoencoder" in out
    assert "autoencoder loaded from runs/course/laptop/autoencoder.pt" in out


def test_the_laptop_tier_trains_the_base_models_longer_on_both_cores():
    laptop, base = preset("laptop"), Config()
    assert (laptop.threads, laptop.train.steps) == (2, 3000) and base.train.steps < 3000
    assert (laptop.autoencoder, laptop.autoencoder_train, laptop.ldm) == (
        base.autoencoder,
        base.autoencoder_train,
        base.ldm,
    )
