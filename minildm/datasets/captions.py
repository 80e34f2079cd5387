"""Captions for the shapes dataset: several templates and synonyms, so text is not a fixed code.

A caption names the main object first ("a large red circle at the top left"); with two
objects it also says how they relate on the 3x3 grid ("a red circle left of a blue
square"). Words are drawn from synonyms ("big"/"large", "centre"/"middle", "purple"/
"violet") and sentences from templates, so the text encoder (LDM sec. 3.3, tau_theta) has
to learn what the words mean rather than memorise one string per class.

`prompt_for` builds the canonical single-object prompt used to measure caption-match
accuracy: the attributes it names are exactly the labels the attribute classifier checks.
`prompt_parts` splits it in two, one naming the shape without the colour and one the colour
without the shape, for composed guidance (pipelines/text_to_image.py).

Partial captions (`partial_captions`): a caption may leave out the main object's colour ("a
large square at the top") or say "shape" or "object" for its shape ("a large green object at
the top"). The held-out (shape, colour) pairs are never shown together; a model that has also
seen each word alone has more reason to learn what each word does by itself (an experiment,
`DataConfig.partial_captions`, docs/EXPERIMENTS.md).
"""

import numpy as np

from minildm.datasets.attributes import (
    COLOURS,
    POSITION_CELLS,
    POSITIONS,
    SHAPES,
    SIZES,
    attribute_index,
)

# the first synonym of each word is the canonical one used by prompt_for
SIZE_WORDS = {"small": ("small", "little", "tiny"), "large": ("large", "big")}
COLOUR_WORDS = {
    "red": ("red",), "orange": ("orange",), "yellow": ("yellow",),
    "green": ("green",), "blue": ("blue",), "purple": ("purple", "violet"),
}  # fmt: skip
SHAPE_WORDS = {
    "circle": ("circle", "disc", "round dot"),
    "square": ("square", "box"),
    "triangle": ("triangle",),
    "diamond": ("diamond", "rhombus"),
}
POSITION_WORDS = {
    "top left": ("at the top left", "in the top left corner", "in the upper left"),
    "top": ("at the top", "near the top", "at the top middle"),
    "top right": ("at the top right", "in the top right corner", "in the upper right"),
    "left": ("on the left", "at the left", "on the left side"),
    "centre": ("in the centre", "in the middle", "at the center"),
    "right": ("on the right", "at the right", "on the right side"),
    "bottom left": ("at the bottom left", "in the bottom left corner", "in the lower left"),
    "bottom": ("at the bottom", "near the bottom", "at the bottom middle"),
    "bottom right": ("at the bottom right", "in the bottom right corner", "in the lower right"),
}
SHAPE_PLACEHOLDERS = ("shape", "object")  # the noun of a caption that does not name the shape
OMIT = ("colour", "shape")  # what a partial caption may leave out
# relation of the FIRST object to the second: "a red circle left of a blue square"
RELATION_WORDS = {
    "left of": ("left of", "to the left of"),
    "right of": ("right of", "to the right of"),
    "above": ("above", "over"),
    "below": ("below", "under"),
}

SINGLE_TEMPLATES = (
    "a {size} {colour} {shape} {where}",
    "{size} {colour} {shape} {where}",
    "a picture of a {size} {colour} {shape} {where}",
    "{where}, a {size} {colour} {shape}",
    "there is a {size} {colour} {shape} {where}",
)
PAIR_TEMPLATES = (
    "a {size} {colour} {shape} {relation} a {size2} {colour2} {shape2}",
    "a {size} {colour} {shape} {where}, {relation} a {size2} {colour2} {shape2}",
    "a {size} {colour} {shape} {where} and a {size2} {colour2} {shape2} {where2}",
)


def relations_between(position: str, other: str) -> list[str]:
    """Every relation word that is true of an object at `position` relative to one at `other`."""
    (row, col), (row2, col2) = POSITION_CELLS[POSITIONS.index(position)], POSITION_CELLS[POSITIONS.index(other)]
    relations = []
    if col < col2:
        relations.append("left of")
    if col > col2:
        relations.append("right of")
    if row < row2:
        relations.append("above")
    if row > row2:
        relations.append("below")
    if not relations:
        raise ValueError(f"two objects must sit in different grid cells, both are at {position!r}")
    return relations


def _pick(rng: np.random.Generator, words: tuple[str, ...]) -> str:
    return words[rng.integers(len(words))]


def caption_for(objects: list[dict], rng: np.random.Generator, omit: str | None = None) -> str:
    """A caption for one image: `objects` are dicts with shape, colour, size, position names,
    the main object first. Templates and synonyms are drawn from `rng`. omit="colour" leaves
    the main object's colour out, omit="shape" names it "shape" or "object" instead."""
    if len(objects) not in (1, 2):
        raise ValueError(f"a caption describes 1 or 2 objects, got {len(objects)}")
    if omit is not None and omit not in OMIT:
        raise ValueError(f"omit must be None, 'colour' or 'shape', got {omit!r}")
    main = objects[0]
    words = {
        "size": _pick(rng, SIZE_WORDS[main["size"]]),
        "colour": _pick(rng, COLOUR_WORDS[main["colour"]]),
        "shape": _pick(rng, SHAPE_WORDS[main["shape"]]),
        "where": _pick(rng, POSITION_WORDS[main["position"]]),
    }
    if omit == "colour":
        words["colour"] = ""
    elif omit == "shape":
        words["shape"] = _pick(rng, SHAPE_PLACEHOLDERS)
    if len(objects) == 1:
        # split and join: no double space where a word was left out
        return " ".join(_pick(rng, SINGLE_TEMPLATES).format(**words).split())
    other = objects[1]
    relation = _pick(rng, tuple(relations_between(main["position"], other["position"])))
    words.update(
        size2=_pick(rng, SIZE_WORDS[other["size"]]),
        colour2=_pick(rng, COLOUR_WORDS[other["colour"]]),
        shape2=_pick(rng, SHAPE_WORDS[other["shape"]]),
        where2=_pick(rng, POSITION_WORDS[other["position"]]),
        relation=_pick(rng, RELATION_WORDS[relation]),
    )
    return " ".join(_pick(rng, PAIR_TEMPLATES).format(**words).split())


def partial_captions(objects: list[list[dict]], fraction: float, seed: int) -> list[str]:
    """One caption per image (`objects` as in caption_for); a share `fraction` of them partial,
    half leaving out the colour and half the shape. Deterministic in `seed`."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    rng = np.random.default_rng([seed, 99])
    captions = []
    for image_objects in objects:
        u = rng.random()
        omit = None if u >= fraction else ("colour" if u < fraction / 2 else "shape")
        captions.append(caption_for(image_objects, rng, omit))
    return captions


def prompt_for(shape: str | int, colour: str | int, size: str | int, position: str | int) -> str:
    """The canonical single-object prompt, e.g. prompt_for("circle", "red", "large", "top left")
    -> "a large red circle at the top left". Accepts names or indices."""
    shape_name = SHAPES[attribute_index(SHAPES, shape, "shape")]
    colour_name = COLOURS[attribute_index(COLOURS, colour, "colour")]
    size_name = SIZES[attribute_index(SIZES, size, "size")]
    position_name = POSITIONS[attribute_index(POSITIONS, position, "position")]
    return SINGLE_TEMPLATES[0].format(
        size=SIZE_WORDS[size_name][0],
        colour=COLOUR_WORDS[colour_name][0],
        shape=SHAPE_WORDS[shape_name][0],
        where=POSITION_WORDS[position_name][0],
    )


def prompt_parts(shape: str | int, colour: str | int, size: str | int, position: str | int) -> tuple[str, str]:
    """The canonical prompt in two parts, (shape without colour, colour without shape), as a
    partial caption words them: prompt_parts("square", "green", "large", "right") ->
    ("a large square on the right", "a large green shape on the right")."""
    a, size_word, colour_word, shape_word, *where = prompt_for(shape, colour, size, position).split()
    shape_part = " ".join([a, size_word, shape_word, *where])
    return shape_part, " ".join([a, size_word, colour_word, SHAPE_PLACEHOLDERS[0], *where])
