"""Typed, frozen settings built from an ml_collections config, for every layer's settings
(`data.training.DataSettings`, `evaluation.settings.EvalSettings`, `train.settings.TrainSettings`);
it lives in the lowest layer so that each of them can use it.

A settings class is a frozen dataclass whose field names are the config's keys and whose
`__post_init__` checks its own values (raising `invalid(key, value, valid)`); `from_config` reads
every field from the config (no defaults here: the config files hold them) and builds nested
settings from nested configs.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any


def invalid(key: str, value: Any, valid: str) -> ValueError:
    """The error for a bad setting: names the config key, the value and what is valid."""
    return ValueError(f"config.{key}={value!r} is not valid; valid: {valid}")


def from_config(cls: type, c: Any, prefix: str = "") -> Any:
    """An instance of the settings dataclass `cls` from the config (or sub-config) `c`; `prefix`
    is `c`'s key path in error messages ("optim.")."""
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        if not f.init or f.name == "source":
            continue
        key = prefix + f.name
        try:
            value = c[f.name]
        except (KeyError, AttributeError):
            raise ValueError(
                f"config.{key} is missing (start from the config files' defaults)"
            ) from None
        values[f.name] = _convert(hints[f.name], value, key)
    return cls(**values)


def _convert(hint: Any, value: Any, key: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return from_config(hint, value, key + ".")
    if typing.get_origin(hint) is tuple:
        return _tuples(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _tuples(value: Any) -> Any:
    """Lists (as configs and JSON give them) -> tuples, nested: the settings stay hashable."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list | tuple) else value
