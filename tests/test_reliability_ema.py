"""Strict EMA loading (issue 15, item 9): shadows whose names or shapes differ from the model's, and
EMA states of the wrong type, are one-line CheckpointErrors; a good state round-trips exactly."""

import pytest
import torch
from torch import nn

from minildm.checkpoint import CheckpointError
from minildm.train.ema import EMA


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1))  # shadows 0.weight (3, 2), 0.bias (3,), 1.weight, 1.bias


def good_state() -> dict:
    ema = EMA(model(), decay=0.99)
    ema.num_updates = 7
    return ema.state_dict()


def refused(state) -> str:
    ema = EMA(model())
    before = {name: value.clone() for name, value in ema.shadow.items()}
    with pytest.raises(CheckpointError) as err:
        ema.load_state_dict(state)
    assert all(torch.equal(before[name], ema.shadow[name]) for name in before)  # nothing half-loaded
    message = str(err.value)
    assert message and "\n" not in message
    return message


def test_a_good_state_round_trips():
    state = good_state()
    state["shadow"] = {name: value + 1 for name, value in state["shadow"].items()}
    ema = EMA(model())
    ema.load_state_dict(state)
    assert ema.decay == 0.99 and ema.num_updates == 7
    assert all(torch.equal(ema.shadow[name], state["shadow"][name]) for name in state["shadow"])


def test_a_wrong_shape_is_refused_not_broadcast():
    state = good_state()
    state["shadow"]["0.weight"] = torch.zeros(1)  # copy_ would broadcast it over (3, 2)
    assert "0.weight is (1,), the model's is (3, 2)" in refused(state)


def test_missing_and_unexpected_names_are_listed_first_few_then_counted():
    state = good_state()
    state["shadow"].pop("0.bias")
    state["shadow"]["2.weight"] = torch.zeros(1)
    state["shadow"]["1.weight"] = torch.zeros(5)
    state["shadow"]["1.bias"] = torch.zeros(5)
    message = refused(state)
    assert "missing 0.bias; unexpected 2.weight; 1.weight is (5,), the model's is (1, 3) and 1 more" in message


@pytest.mark.parametrize(
    "state, phrase",
    [
        ([1, 2], "got list"),
        (torch.zeros(3), "got Tensor"),
        ({"shadow": {}}, "got ['shadow']"),
        ({**good_state(), "shadow": [torch.zeros(3)]}, "shadow must be a dict"),
        (
            {**good_state(), "shadow": {"0.weight": [[0.0, 0.0]] * 3}},
            "shadow must be a dict of parameter name -> tensor",
        ),
        ({**good_state(), "decay": "0.9"}, "decay must be a number in [0, 1), got '0.9'"),
        ({**good_state(), "decay": float("nan")}, "decay must be a number in [0, 1), got nan"),
        ({**good_state(), "num_updates": -1}, "num_updates must be an int >= 0, got -1"),
        ({**good_state(), "num_updates": 2.5}, "num_updates must be an int >= 0, got 2.5"),
    ],
)
def test_a_state_of_the_wrong_type_is_refused(state, phrase):
    assert phrase in refused(state)
