"""Command lines derived from the config dataclasses: one flag per exposed leaf, presets, strict names.

    parser = config_parser(TrainConfig, description=__doc__, presets=TRAIN_PRESETS)
    config, extras = parse_config(parser, TrainConfig, argv)

Precedence: the dataclass default < the preset < a flag given on the command line (flags default to
"not given", so a preset never overrides what the user typed). An unknown flag is an error that names
the closest valid one. `to_arguments` is the inverse: the flags that rebuild a config exactly (used to
launch child jobs).
"""

from __future__ import annotations

import argparse
import difflib
import re
import typing
from typing import Any, Mapping, Sequence

from ray_effreason.config_tree import flat_fields, from_flat, leaf_field, leaves, split_list

NONE = "none"  # an optional value given as `none` on the command line is None


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


class ConfigArgumentParser(argparse.ArgumentParser):
    """argparse with close-match suggestions for a misspelled flag (Python 3.11's argparse has none)."""

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        namespace, extras = super().parse_known_args(args, namespace)
        unknown = [item for item in extras if item.startswith("--")]
        if unknown:
            valid = [option for action in self._actions for option in action.option_strings if option.startswith("--")]
            messages = []
            for item in unknown:
                close = difflib.get_close_matches(item.split("=", 1)[0], valid, n=1)
                messages.append(item + (f" (did you mean {close[0]}?)" if close else ""))
            self.error(f"unrecognized arguments: {', '.join(messages)}; see --help for the valid flags")
        return namespace, extras


def _parser_of(annotation: Any) -> tuple[Any, bool]:
    """(argparse type, optional?) of a leaf annotation: int | None -> (int, True); tuple[float, ...] -> list parser."""
    args = typing.get_args(annotation)
    optional = type(None) in args
    concrete = [arg for arg in args if arg is not type(None)] if args and typing.get_origin(annotation) is not tuple \
        else [annotation]
    leaf = concrete[0]
    if typing.get_origin(leaf) is tuple:
        item = typing.get_args(leaf)[0]

        def convert(text: str) -> tuple:
            return tuple(item(value) for value in split_list(text))
    else:
        convert = leaf if leaf in (int, float, str, bool) else str
    if optional and convert is not bool:
        inner = convert

        def convert(text: str) -> Any:
            return None if text.strip().lower() == NONE else inner(text)
    return convert, optional


def _typed(convert: Any, name: str) -> Any:
    def parse(text: str) -> Any:
        try:
            return convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag(name)}: invalid value {text!r}") from None
    return parse


def add_config_arguments(parser: argparse.ArgumentParser, cls: type, presets: Mapping[str, Mapping] | None = None,
                         exclude: Sequence[str] = ()) -> None:
    """One flag per exposed leaf of `cls`, grouped by nested config; every flag defaults to "not given"."""
    defaults = flat_fields(cls())
    groups: dict[str, Any] = {}
    for name, path in leaves(cls).items():
        if name in exclude:
            continue
        item, annotation = leaf_field(cls, path)
        group_name = ".".join(path[:-1]) or cls.__name__
        group = groups.get(group_name) or groups.setdefault(group_name, parser.add_argument_group(group_name))
        convert, _ = _parser_of(annotation)
        help_text = f"{item.metadata.get('help', '')} (default: {defaults[name]})"
        # a field may carry other spellings of its flag (metadata "aliases"); a sweep's prefixed leaf gets them too
        prefix = name[: len(name) - len(path[-1])]
        flags = [flag(name), *(flag(prefix + alias) for alias in item.metadata.get("aliases", ()))]
        if convert is bool:
            group.add_argument(*flags, dest=name, action=argparse.BooleanOptionalAction,
                               default=argparse.SUPPRESS, help=help_text)
        else:
            group.add_argument(*flags, dest=name, type=_typed(convert, name), default=argparse.SUPPRESS,
                               metavar=name.upper(), help=help_text)
    if presets:
        parser.add_argument("--preset", choices=list(presets), default=None,
                            help="defaults for every flag not given: " + ", ".join(presets))


def config_parser(cls: type, description: str | None = None, presets: Mapping[str, Mapping] | None = None,
                  exclude: Sequence[str] = ()) -> ConfigArgumentParser:
    parser = ConfigArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser, cls, presets, exclude)
    return parser


def given_values(parser: argparse.ArgumentParser, cls: type, argv: Sequence[str] | None
                 ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Parse argv into (config values the user gave, the other arguments of the parser)."""
    arguments = vars(parser.parse_args(argv))
    names = leaves(cls)
    given = {key: value for key, value in arguments.items() if key in names}
    extras = {key: value for key, value in arguments.items() if key not in names}
    return given, extras


def parse_config(parser: argparse.ArgumentParser, cls: type, argv: Sequence[str] | None = None,
                 presets: Mapping[str, Mapping] | None = None, default_preset: str | None = None
                 ) -> tuple[Any, dict[str, Any]]:
    """(config, other arguments); a bad value is a parser error naming the flag, before anything starts."""
    given, extras = given_values(parser, cls, argv)
    preset_name = extras.get("preset") or default_preset
    preset = dict(presets[preset_name]) if presets and preset_name else {}
    try:
        config = from_flat(cls, {**preset, **given}, where="the command line")
    except (ValueError, TypeError) as error:
        parser.error(_as_flag_message(str(error), cls))
    return config, extras


def _as_flag_message(message: str, cls: type) -> str:
    """A validation message starts with the field's name ("tasks='mmlu' is not valid"); name the flag instead.

    >>> from ray_effreason.config import SweepConfig
    >>> _as_flag_message("limit must be > 0, got 0", SweepConfig)
    '--eval-limit: limit must be > 0, got 0'
    """
    name = re.split(r"[=: ]", message, maxsplit=1)[0]
    names = leaves(cls)
    matches = [name] if name in names else [leaf for leaf in names if leaf.endswith("_" + name)]
    return f"{flag(matches[0])}: {message}" if len(matches) == 1 else message


def to_arguments(config: Any) -> list[str]:
    """The command-line flags that rebuild `config` exactly (for launching a child job with these values).

    >>> from ray_effreason.config import TrainConfig, RewardConfig
    >>> arguments = to_arguments(TrainConfig(reward=RewardConfig(alpha=0.4)))
    >>> arguments[arguments.index("--alpha") + 1], arguments[arguments.index("--steps") + 1]
    ('0.4', 'none')
    """
    arguments: list[str] = []
    for name, value in flat_fields(config).items():
        if isinstance(value, bool):
            arguments.append(flag(name) if value else "--no-" + name.replace("_", "-"))
        elif value is None:
            arguments += [flag(name), NONE]
        elif isinstance(value, (tuple, list)):
            arguments += [flag(name), ",".join(map(str, value))]
        elif isinstance(value, dict):
            arguments += [flag(name), ",".join(f"{key}={item}" for key, item in value.items())]
        else:
            arguments += [flag(name), str(value)]
    return arguments
