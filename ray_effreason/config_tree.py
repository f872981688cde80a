"""Flat names <-> nested config dataclasses: what the command line, presets and saved configs speak.

`option` declares a knob (default, help), `nested` a sub-config (optionally hidden or prefixed leaves);
`check_*` are the validations configs share. Every exposed leaf of a config tree has one flat name
(`kl_coef`, `eval_limit`); `leaves` maps names to attribute paths, `from_flat` builds a config from names
(an unknown one is an error with a close-match suggestion), `flat_fields` reads them back,
`to_dict`/`from_dict` round-trip a saved config.json.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import field
from typing import Any, Callable, Iterable, Mapping

# ---------------------------------------------------------------- declaring fields


def option(default: Any, help: str, **metadata: Any) -> Any:
    """A dataclass field with help text (shown by --help)."""
    return field(default=default, metadata={"help": help, **metadata})


def nested(factory: Callable[[], Any], *, prefix: str = "", hide: Iterable[str] = ()) -> Any:
    """A nested config field. `hide`: leaf names the composing class sets itself (not flags, not preset keys);
    `prefix`: prepended to the nested leaves' flat names (a sweep's `eval_limit` is its EvalConfig's `limit`)."""
    return field(default_factory=factory, metadata={"prefix": prefix, "hide": frozenset(hide)})


def check_choice(name: str, value: Any, valid: Iterable[Any]) -> None:
    valid = list(valid)
    if value not in valid:
        raise ValueError(f"{name}={value!r} is not valid; choose one of {valid}")


def check_positive(config: Any, *names: str) -> None:
    for name in names:
        value = getattr(config, name)
        if value is not None and value <= 0:
            raise ValueError(f"{name} must be > 0, got {value!r}")


def split_list(value: str | Iterable[Any]) -> tuple[Any, ...]:
    """'a, b' -> ('a', 'b'); a sequence stays as it is (stripped of empty strings)."""
    items = value.split(",") if isinstance(value, str) else value
    return tuple(item.strip() if isinstance(item, str) else item for item in items
                 if not (isinstance(item, str) and not item.strip()))


# ---------------------------------------------------------------- flat names


def leaves(cls: type) -> dict[str, tuple[str, ...]]:
    """Flat name -> attribute path of every exposed leaf of `cls` (hidden leaves left out; names are unique).

    >>> from ray_effreason.config import EvalConfig, ModelConfig
    >>> leaves(ModelConfig)
    {'model': ('model',), 'tokenizer': ('tokenizer',), 'device': ('device',)}
    >>> leaves(EvalConfig)["temperature"], "samples_per_prompt" in leaves(EvalConfig)
    (('rollout', 'temperature'), False)
    """
    result: dict[str, tuple[str, ...]] = {}
    hints = typing.get_type_hints(cls)
    for item in dataclasses.fields(cls):
        kind = hints[item.name]
        if dataclasses.is_dataclass(kind):
            hidden, prefix = item.metadata.get("hide", frozenset()), item.metadata.get("prefix", "")
            inner = {prefix + name: (item.name, *path) for name, path in leaves(kind).items() if name not in hidden}
        else:
            inner = {item.name: (item.name,)}
        for name, path in inner.items():
            if name in result:
                raise TypeError(f"{cls.__name__}: flat name {name!r} is declared twice ({result[name]} and {path})")
            result[name] = path
    return result


def leaf_field(cls: type, path: tuple[str, ...]) -> tuple[dataclasses.Field, Any]:
    """The dataclass field at `path` of `cls` and its type annotation."""
    for index, name in enumerate(path):
        hints = typing.get_type_hints(cls)
        item = next(item for item in dataclasses.fields(cls) if item.name == name)
        if index == len(path) - 1:
            return item, hints[name]
        cls = hints[name]
    raise ValueError("empty path")


def unknown_names_error(unknown: Iterable[str], valid: Iterable[str], where: str) -> ValueError:
    """'unknown name kl_coeff in <where> (did you mean kl_coef?); valid names: ...'."""
    valid = sorted(valid)
    parts = []
    for name in unknown:
        close = difflib.get_close_matches(name, valid, n=1)
        parts.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    return ValueError(f"unknown name(s) {', '.join(parts)} in {where}; valid names: {', '.join(valid)}")


def from_flat(cls: type, values: Mapping[str, Any], *, base: Any = None, where: str = "the configuration") -> Any:
    """Build `cls` from flat names (over `base`, default `cls()`); an unknown or hidden name is an error.

    >>> from ray_effreason.config import TrainConfig
    >>> from_flat(TrainConfig, {"kl_coef": 0.5}).loss.kl_coef
    0.5
    >>> from_flat(TrainConfig, {"kl_coeff": 0.5})
    Traceback (most recent call last):
    ...
    ValueError: unknown name(s) 'kl_coeff' (did you mean 'kl_coef'?) in the configuration; valid names: ...
    """
    paths = leaves(cls)
    unknown = [name for name in values if name not in paths]
    if unknown:
        raise unknown_names_error(unknown, paths, where)
    tree: dict[str, Any] = {}
    for name, value in values.items():
        node = tree
        *parents, last = paths[name]
        for parent in parents:
            node = node.setdefault(parent, {})
        node[last] = value
    return _rebuild(base if base is not None else cls(), tree)


def _rebuild(config: Any, tree: dict[str, Any]) -> Any:
    changes = {name: _rebuild(getattr(config, name), value) if isinstance(value, dict)
               and dataclasses.is_dataclass(getattr(config, name)) else value for name, value in tree.items()}
    return dataclasses.replace(config, **changes)


def flat_fields(config: Any) -> dict[str, Any]:
    """Flat name -> value of every exposed leaf (what `from_flat` takes back)."""
    result = {}
    for name, path in leaves(type(config)).items():
        value = config
        for part in path:
            value = getattr(value, part)
        result[name] = value
    return result


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def from_dict(cls: type, data: Mapping[str, Any], where: str = "the saved configuration") -> Any:
    """Inverse of to_dict (for resume): nested dicts become nested dataclasses; an unknown key is an error."""
    hints = typing.get_type_hints(cls)
    names = {item.name for item in dataclasses.fields(cls)}
    unknown = [key for key in data if key not in names]
    if unknown:
        raise unknown_names_error(unknown, names, where)
    kwargs = {}
    for key, value in data.items():
        kind = hints[key]
        kwargs[key] = from_dict(kind, value, where) if dataclasses.is_dataclass(kind) else value
        if isinstance(kwargs[key], list):
            kwargs[key] = tuple(kwargs[key])
    return cls(**kwargs)
