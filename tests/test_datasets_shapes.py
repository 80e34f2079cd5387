"""The built-in shapes dataset: contract, determinism, ground truth, held-out split, captions."""

import numpy as np
import pytest
import torch

from minildm.datasets import (
    COLOURS,
    HELDOUT_COMBINATIONS,
    POSITIONS,
    SHAPES,
    SIZES,
    ShapesConfig,
    ShapesDataset,
    caption_for,
    partial_captions,
    prompt_for,
    prompt_parts,
)
from minildm.datasets.captions import (
    COLOUR_WORDS,
    POSITION_WORDS,
    SHAPE_WORDS,
    SIZE_WORDS,
    relations_between,
)
from minildm.datasets.render import coverage, hsv_to_rgb


def small(**overrides):
    fields = {"size": 32, "num_samples": 300, "seed": 0, "split": "train", "max_objects": 2, "cache": False}
    fields.update(overrides)
    return ShapesDataset(ShapesConfig(**fields))


def test_contract_shapes_and_ranges():
    ds = small()
    assert ds.images.shape == (300, 3, 32, 32) and ds.images.dtype == torch.float32
    assert ds.images.min() >= -1 and ds.images.max() <= 1
    assert ds.masks.shape == (300, 1, 32, 32) and set(ds.masks.unique().tolist()) == {0.0, 1.0}
    assert ds.labels.shape == (300, 4) and ds.labels.dtype == torch.long
    assert len(ds.captions) == len(ds.objects) == len(ds) == 300
    item = ds[7]
    assert set(item) == {"image", "mask", "caption", "labels"} and item["image"].shape == (3, 32, 32)
    limits = torch.tensor([len(SHAPES), len(COLOURS), len(SIZES), len(POSITIONS)])
    assert (ds.labels >= 0).all() and (ds.labels < limits).all()
    assert {len(o) for o in ds.objects} == {1, 2}


def test_deterministic_from_seed_and_seed_matters():
    a, b, c = small(), small(), small(seed=1)
    assert torch.equal(a.images, b.images) and a.captions == b.captions
    assert not torch.equal(a.images, c.images)


def test_labels_agree_with_objects_and_captions_name_the_main_object_first():
    ds = small()
    for labels, objects, caption in zip(ds.labels.tolist(), ds.objects, ds.captions):
        main = objects[0]
        assert (SHAPES[labels[0]], COLOURS[labels[1]], SIZES[labels[2]], POSITIONS[labels[3]]) == (
            main["shape"],
            main["colour"],
            main["size"],
            main["position"],
        )
        # the first colour and shape words in the caption are the main object's
        colour_at = min(caption.find(w) for w in COLOUR_WORDS[main["colour"]] if w in caption)
        for other in objects[1:]:
            if other["colour"] != main["colour"]:
                assert colour_at < min(caption.find(w) for w in COLOUR_WORDS[other["colour"]] if w in caption)
        assert any(w in caption for w in SHAPE_WORDS[main["shape"]]) and any(
            w in caption for w in SIZE_WORDS[main["size"]]
        )


def test_masks_lie_inside_the_boxes_and_boxes_do_not_overlap():
    ds = small(size=64, num_samples=100)
    for mask, objects in zip(ds.masks, ds.objects):
        inside = torch.zeros(64, 64)
        for obj in objects:
            x0, y0, x1, y1 = obj["box"]
            assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64
            inside[int(np.floor(y0)) : int(np.ceil(y1)), int(np.floor(x0)) : int(np.ceil(x1))] = 1
        assert (mask[0] <= inside).all()
        assert mask.sum() > 0.5 * sum((o["box"][2] - o["box"][0]) * (o["box"][3] - o["box"][1]) for o in objects) * 0.5
        if len(objects) == 2:
            (a0, b0, a1, b1), (c0, d0, c1, d1) = objects[0]["box"], objects[1]["box"]
            assert a1 <= c0 or c1 <= a0 or b1 <= d0 or d1 <= b0


def test_heldout_split_is_disjoint_and_training_still_sees_every_attribute():
    heldout = set(HELDOUT_COMBINATIONS)
    train = small(num_samples=600)
    for objects in train.objects:
        assert all((o["shape"], o["colour"]) not in heldout for o in objects)
    seen = {key: {o[key] for objs in train.objects for o in objs} for key in ("shape", "colour", "position", "size")}
    assert seen == {"shape": set(SHAPES), "colour": set(COLOURS), "position": set(POSITIONS), "size": set(SIZES)}
    test = small(split="heldout", num_samples=200)
    assert all((objs[0]["shape"], objs[0]["colour"]) in heldout for objs in test.objects)
    assert {(objs[0]["shape"], objs[0]["colour"]) for objs in test.objects} == heldout


def test_colour_of_the_main_object_matches_its_hue():
    ds = small(max_objects=1, num_samples=120)
    rgb = (ds.images + 1) / 2
    hues = {"red": 0, "orange": 28, "yellow": 55, "green": 125, "blue": 220, "purple": 280}
    for image, mask, labels in zip(rgb, ds.masks, ds.labels):
        colour = image[:, mask[0] > 0].mean(1)
        r, g, b = colour.tolist()
        hue = np.degrees(np.arctan2(np.sqrt(3) * (g - b), 2 * r - g - b)) % 360  # hue angle of an RGB colour
        target = hues[COLOURS[labels[1]]]
        assert min(abs(hue - target), 360 - abs(hue - target)) < 12


def test_any_power_of_two_and_bad_configs():
    assert small(size=16, num_samples=4).images.shape[-1] == 16
    for bad in ({"size": 48}, {"split": "test"}, {"max_objects": 3}, {"num_samples": 0}):
        with pytest.raises(ValueError):
            ShapesConfig(**bad)


def test_cache_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv("MINILDM_DATA", str(tmp_path))
    first = small(num_samples=50, cache=True)
    files = list((tmp_path / "shapes").glob("*.pt"))
    assert len(files) == 1
    second = small(num_samples=50, cache=True)
    assert (
        torch.equal(first.images, second.images)
        and first.objects == second.objects
        and first.captions == second.captions
    )


def test_coverage_is_antialiased_and_has_the_right_area():
    # a circle of radius 10 px: the coverage sums to its area pi r^2 within a pixel's ring
    cov = coverage(torch.tensor([0]), torch.tensor([[32.0, 32.0]]), torch.tensor([10.0]), 64)
    assert abs(cov.sum().item() - np.pi * 100) < 2.0
    assert ((cov > 0) & (cov < 1)).any()


def test_hsv_primaries():
    rgb = hsv_to_rgb(torch.tensor([0.0, 120.0, 240.0, 60.0]), torch.ones(4), torch.ones(4))
    assert torch.allclose(rgb, torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]]))


def test_prompts_and_captions():
    assert prompt_for("circle", "red", "large", "top left") == "a large red circle at the top left"
    assert prompt_for(2, 5, 0, 4) == "a small purple triangle in the centre"
    with pytest.raises(ValueError):
        prompt_for("hexagon", "red", "large", "top left")
    rng = np.random.default_rng(0)
    objects = [
        {"shape": "circle", "colour": "red", "size": "small", "position": "left"},
        {"shape": "square", "colour": "blue", "size": "large", "position": "right"},
    ]
    captions = {caption_for(objects, rng) for _ in range(200)}
    assert len(captions) > 10  # several templates and synonyms
    # the red circle is left of the blue square and on the same row: no other relation is true
    assert not any(word in c for c in captions for word in ("right of", "above", "over", "below", "under"))
    assert relations_between("top left", "bottom right") == ["left of", "above"]
    assert all(POSITION_WORDS[p][0] in prompt_for(0, 0, 0, p) for p in POSITIONS)
    with pytest.raises(ValueError):
        relations_between("centre", "centre")


def test_partial_captions_leave_out_the_colour_or_the_shape():
    main = {"shape": "square", "colour": "green", "size": "large", "position": "right"}
    other = {"shape": "circle", "colour": "red", "size": "small", "position": "left"}
    rng = np.random.default_rng(0)
    shape_words, colour_words = set(SHAPE_WORDS["square"]), set(COLOUR_WORDS["green"])
    for _ in range(50):
        no_colour = caption_for([main], rng, omit="colour")
        no_shape = caption_for([main], rng, omit="shape")
        assert "green" not in no_colour and any(word in no_colour.split() for word in shape_words), no_colour
        assert not any(word in no_shape.split() for word in shape_words), no_shape
        assert "green" in no_shape.split() and ({"shape", "object"} & set(no_shape.split())), no_shape
        assert "  " not in no_colour and not no_colour.startswith(" ")
        pair = caption_for([main, other], rng, omit="colour")  # the second object keeps its words
        assert not (colour_words & set(pair.split())) and "red" in pair.split(), pair
    with pytest.raises(ValueError, match="omit must be None, 'colour' or 'shape', got 'size'"):
        caption_for([main], rng, omit="size")


def test_partial_captions_share_and_determinism():
    ds = small(num_samples=2000, max_objects=1)
    captions = partial_captions(ds.objects, 0.4, seed=3)
    assert captions == partial_captions(ds.objects, 0.4, seed=3)
    named = [(set(COLOUR_WORDS[obj[0]["colour"]]), SHAPE_WORDS[obj[0]["shape"]]) for obj in ds.objects]
    no_colour = sum(not (colours & set(c.split())) for c, (colours, _) in zip(captions, named))
    no_shape = sum(not any(w in c for w in shapes) for c, (_, shapes) in zip(captions, named))
    # each is Binomial(2000, 0.2): mean 400, sd 17.9; 5 sd either side
    assert abs(no_colour - 400) < 90 and abs(no_shape - 400) < 90, (no_colour, no_shape)

    def names_both(caption, colours, shapes):
        return bool(colours & set(caption.split())) and any(w in caption for w in shapes)

    assert all(names_both(c, *words) for c, words in zip(partial_captions(ds.objects, 0.0, seed=3), named))
    assert not any(names_both(c, *words) for c, words in zip(partial_captions(ds.objects, 1.0, seed=3), named))
    with pytest.raises(ValueError, match=r"fraction must be in \[0, 1\], got 1.5"):
        partial_captions(ds.objects, 1.5, seed=3)


def test_prompt_parts_split_the_canonical_prompt():
    assert prompt_parts("square", "green", "large", "right") == (
        "a large square on the right",
        "a large green shape on the right",
    )
    assert prompt_parts(2, 5, 0, 4) == ("a small triangle in the centre", "a small purple shape in the centre")


def test_pinned_regression():
    ds = small(num_samples=4)
    assert ds.captions[0] == PINNED_CAPTION
    assert abs(ds.images.sum().item() - PINNED_SUM) < 1e-2


PINNED_CAPTION = "a large green diamond at the top left and a big red box in the bottom left corner"
PINNED_SUM = 7151.9375
