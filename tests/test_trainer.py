"""The LDM training loop: EMA, checkpoints, and resuming to the same bits."""

import pytest
import torch
from test_ldm import tiny_ldm

from minildm.checkpoint import load_checkpoint
from minildm.train.ema import EMA
from minildm.train.runs import RunError
from minildm.train.trainer import TensorBatches, TrainConfig, train_ldm


def tiny_data(ldm, n: int = 16) -> TensorBatches:
    captions = ["a large red circle at the top left", "a small blue square", "a green triangle", "a box"]
    return TensorBatches(torch.randn(n, 4, 8, 8), tokens=ldm.tokenize([captions[i % 4] for i in range(n)]))


def test_ema_follows_the_formula():
    model = torch.nn.Linear(2, 1)
    ema = EMA(model, decay=0.9)
    start = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)  # n = 0: d = min(0.9, 1 / 10) = 0.1
    torch.testing.assert_close(ema.shadow["weight"], 0.1 * start + 0.9 * (start + 1))
    ema.num_updates = 1000
    before = ema.shadow["weight"].clone()
    ema.update(model)  # d = 0.9
    torch.testing.assert_close(ema.shadow["weight"], 0.9 * before + 0.1 * model.weight.detach())
    ema.copy_to(model)
    torch.testing.assert_close(model.weight.detach(), ema.shadow["weight"])


def test_ema_skips_frozen_parameters():
    ldm = tiny_ldm()
    ema = EMA(ldm)
    assert ema.shadow and not any(name.startswith("autoencoder.") for name in ema.shadow)


def test_training_updates_and_checkpoints(tmp_path):
    ldm = tiny_ldm()
    before = {k: v.clone() for k, v in ldm.unet.state_dict().items()}
    config = TrainConfig(steps=3, batch_size=4, lr=1e-3, warmup_steps=2)
    history = train_ldm(ldm, tiny_data(ldm), config, out_dir=tmp_path, progress=False)
    assert len(history["loss"]) == 3 and history["lr"] == [5e-4, 1e-3, 1e-3]
    assert any(not torch.equal(before[k], v) for k, v in ldm.unet.state_dict().items())
    state = load_checkpoint(tmp_path / "ldm.pt", required_keys=("model", "ema", "training", "config"))
    assert state["training"]["step"] == 3 and state["ema"]["num_updates"] == 3
    # on return, the model holds the EMA weights
    for name, param in ldm.named_parameters():
        if param.requires_grad:
            torch.testing.assert_close(param.detach(), state["ema"]["shadow"][name])


def test_resuming_an_interrupted_run_gives_the_same_bits(tmp_path):
    def train(ldm, data, out, steps, resume=False):
        config = TrainConfig(
            steps=steps, batch_size=4, lr=1e-3, warmup_steps=2, cond_drop_prob=0.3, checkpoint_every=2, resume=resume
        )
        return train_ldm(ldm, data, config, out_dir=out, progress=False)

    torch.manual_seed(0)
    whole = tiny_ldm()
    train(whole, tiny_data(whole), tmp_path / "whole", 5)

    torch.manual_seed(0)
    first = tiny_ldm()
    data = tiny_data(first)
    train(first, data, tmp_path / "split", 2)  # "interrupted" after 2 steps
    torch.manual_seed(123)  # whatever happened in between: a step's random numbers depend on (seed, step) alone
    resumed = tiny_ldm()
    history = train(resumed, data, tmp_path / "split", 5, resume=True)

    assert len(history["loss"]) == 5
    a = load_checkpoint(tmp_path / "whole" / "ldm.pt")
    b = load_checkpoint(tmp_path / "split" / "ldm.pt")
    assert a["training"]["history"] == b["training"]["history"]
    for name, value in a["model"].items():
        assert torch.equal(value, b["model"][name]), name
    for name, value in a["ema"]["shadow"].items():
        assert torch.equal(value, b["ema"]["shadow"][name]), name


def test_a_trained_model_is_never_overwritten_by_accident(tmp_path):
    ldm = tiny_ldm()
    data = tiny_data(ldm)
    train_ldm(ldm, data, TrainConfig(steps=2, batch_size=4), out_dir=tmp_path, progress=False)
    before = (tmp_path / "ldm.pt").read_bytes()
    with pytest.raises(RunError, match="already holds a trained model: pass --train.resume=true .* --overwrite"):
        train_ldm(tiny_ldm(), data, TrainConfig(steps=2, batch_size=4), out_dir=tmp_path, progress=False)
    assert (tmp_path / "ldm.pt").read_bytes() == before
    with pytest.raises(RunError, match="it has trained 2 steps, more than the 1 asked for"):
        train_ldm(tiny_ldm(), data, TrainConfig(steps=1, batch_size=4, resume=True), out_dir=tmp_path, progress=False)
    other = tiny_ldm(prediction_type="v")
    with pytest.raises(
        RunError, match=r"its model config differs: prediction_type \('eps' in the checkpoint, 'v' now\)"
    ):
        train_ldm(other, data, TrainConfig(steps=3, batch_size=4, resume=True), out_dir=tmp_path, progress=False)
    train_ldm(tiny_ldm(), data, TrainConfig(steps=1, batch_size=4), out_dir=tmp_path, progress=False, overwrite=True)
    assert load_checkpoint(tmp_path / "ldm.pt")["training"]["step"] == 1


def test_config_errors():
    for changes, words in (
        ({"cond_drop_prob": 1.0}, "cond_drop_prob must be in"), ({"ema_decay": 2.0}, "ema_decay must be in"),
        ({"steps": -1}, "steps >= 0"), ({"batch_size": 0}, "batch_size >= 1"),
        ({"lr": float("nan")}, "lr must be a finite"),
        ({"lr_schedule": "linear"}, "lr_schedule must be one of"),
    ):  # fmt: skip
        with pytest.raises(ValueError, match=words):
            TrainConfig(**changes)
