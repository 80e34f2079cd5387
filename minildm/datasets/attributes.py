"""The vocabulary of the built-in shapes dataset: shapes, colours, sizes, positions.

Every object in an image is described by four attributes, each an index into one of the
tuples below. The same indices are the class labels that the attribute classifier in
`minildm.metrics` reads back from generated images (caption-match accuracy).

Positions sit on a 3x3 grid; `POSITION_CELLS[p] = (row, col)` is what captions use to say
how two objects relate ("left of", "above").

Held-out combinations: the `heldout` split contains only images whose main object is one of
`HELDOUT_COMBINATIONS` (shape, colour); the `train` split never contains those pairs
anywhere in an image. Every shape and every colour still appears in training (each held-out
shape is seen in five other colours, each held-out colour on three other shapes), so a model
that generates "a purple triangle" has to compose "purple" and "triangle" it learned apart.
"""

SHAPES = ("circle", "square", "triangle", "diamond")
COLOURS = ("red", "orange", "yellow", "green", "blue", "purple")
SIZES = ("small", "large")
POSITIONS = (
    "top left", "top", "top right",
    "left", "centre", "right",
    "bottom left", "bottom", "bottom right",
)  # fmt: skip

# (row, col) on the 3x3 grid for each position, row 0 at the top
POSITION_CELLS = tuple((p // 3, p % 3) for p in range(len(POSITIONS)))

# hue in degrees (HSV) at the centre of each colour; shades vary a little around it
COLOUR_HUES = {"red": 0.0, "orange": 28.0, "yellow": 55.0, "green": 125.0, "blue": 220.0, "purple": 280.0}

HELDOUT_COMBINATIONS = (("triangle", "purple"), ("square", "green"), ("circle", "orange"), ("diamond", "yellow"))


def attribute_index(vocabulary: tuple[str, ...], value: str | int, what: str) -> int:
    """The index of `value` (a name or an index) in `vocabulary`, with an error that lists the choices."""
    if not isinstance(value, str):
        value = int(value)
        if not 0 <= value < len(vocabulary):
            raise ValueError(f"{what} index must be in [0, {len(vocabulary)}), got {value}")
        return value
    if value not in vocabulary:
        raise ValueError(f"{what} must be one of {vocabulary}, got {value!r}")
    return vocabulary.index(value)
