"""The command line generated from the config tree: one flag per field, `--path.to.field=value`.

    --seed=1  --data.size=32  --autoencoder.kind=vq  --ldm.unet.base_channels=64
    --ldm.unet.channel_mult=1,2  --ldm.min_snr_gamma=none  --train.lr=2e-3

Each value is parsed with its field's type (int, float, str, bool, tuples, optionals), and a
command offers only the sections it reads. The tree is rebuilt from the defaults with every
flag applied at once (`tree_from_dict`), so fields that are checked against each other (a
width against another) are checked together, after the derived fields are filled in.

Hand-written rather than tyro or simple-parsing: about a hundred lines a reader can follow,
one-line errors with exit code 2, and no dependency.
"""

import argparse
import dataclasses
import math
import types
import typing


def parse_value(text: str, annotation, name: str):
    """`text` as the type `annotation` of field `name`, or an ArgumentTypeError saying what was expected."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        return None if text.lower() == "none" else parse_value(text, options[0], name)
    if typing.get_origin(annotation) is tuple:
        item_type = typing.get_args(annotation)[0]
        return tuple(parse_value(item, item_type, name) for item in text.split(",") if item)
    if annotation is bool:
        if text.lower() in ("1", "true", "yes"):
            return True
        if text.lower() in ("0", "false", "no"):
            return False
        raise argparse.ArgumentTypeError(f"--{name} must be true or false, got {text!r}")
    try:
        value = annotation(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--{name} must be a{'n' if annotation is int else ''} {annotation.__name__}, got {text!r}"
        ) from None
    if isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"--{name} must be a finite number, got {text!r}")
    return value


def nested_dataclass(annotation) -> type | None:
    """The dataclass that a field holds (also inside `X | None`), or None for a plain field."""
    for candidate in (annotation, *typing.get_args(annotation)):
        if dataclasses.is_dataclass(candidate):
            return candidate
    return None


def leaf_fields(config_class, prefix: str = "") -> list[tuple[str, object]]:
    """(dotted path, type annotation) of every plain field of the tree under `config_class`."""
    leaves = []
    hints = typing.get_type_hints(config_class)
    for field in dataclasses.fields(config_class):
        path = f"{prefix}{field.name}"
        inner = nested_dataclass(hints[field.name])
        leaves += leaf_fields(inner, path + ".") if inner else [(path, hints[field.name])]
    return leaves


def add_tree_flags(
    parser: argparse.ArgumentParser, config_class, sections: tuple[str, ...], hidden: tuple[str, ...]
) -> list[str]:
    """Add --path for every leaf of `config_class` under `sections` ("" is the top level's plain
    fields) except the paths in `hidden`; returns the paths added."""
    paths = []
    for path, annotation in leaf_fields(config_class):
        section = path.split(".")[0] if "." in path else ""
        if section not in sections or path in hidden:
            continue
        group_name = f"{section or 'run'} options"
        group = next((g for g in parser._action_groups if g.title == group_name), None) or parser.add_argument_group(
            group_name
        )
        group.add_argument(
            f"--{path}", dest=path, default=argparse.SUPPRESS,
            metavar=getattr(annotation, "__name__", str(annotation)).upper(),
            type=lambda text, a=annotation, n=path: parse_value(text, a, n),
        )  # fmt: skip
        paths.append(path)
    return paths


def set_path(tree: dict, path: str, value) -> None:
    """tree["a"]["b"]["c"] = value for path "a.b.c"."""
    *parents, leaf = path.split(".")
    for key in parents:
        tree = tree[key]
    tree[leaf] = value


def get_path(tree, path: str):
    """The value at "a.b.c" in a dataclass tree (or a nested dict)."""
    for key in path.split("."):
        tree = tree[key] if isinstance(tree, dict) else getattr(tree, key)
    return tree


def tree_from_dict(config_class, data: dict, path: str = ""):
    """Rebuild a dataclass tree from its asdict() form (lists back to tuples), leaves first; a
    ValueError from a part's own checks is re-raised naming the part (`ldm.unet: ...`)."""
    hints = typing.get_type_hints(config_class)
    kwargs = {}
    for field in dataclasses.fields(config_class):
        if field.name not in data:
            continue
        value, inner = data[field.name], nested_dataclass(hints[field.name])
        if inner is not None and isinstance(value, dict):
            value = tree_from_dict(inner, value, f"{path}{field.name}.")
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[field.name] = value
    try:
        return config_class(**kwargs)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path.rstrip('.') or config_class.__name__}: {err}") from err
