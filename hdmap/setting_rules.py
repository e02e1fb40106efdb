"""What each setting accepts, declared once on its dataclass field (`setting(default, help, choices=..., low=...)`),
and the one check of a settings mapping against its dataclass tree: every key known, every value of its field's type,
choice and range. The same declarations generate docs/settings.md (hdmap/settings_docs.py)."""
from __future__ import annotations

import dataclasses
import functools
import math
import typing
from dataclasses import MISSING, dataclass
from pathlib import Path

from hdmap.config import ConfigError


@dataclass(frozen=True)
class Rule:
    """The values a setting accepts beyond its type."""

    help: str = ""
    choices: tuple | None = None
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # (low, ...: low itself refused
    high_open: bool = False
    path: bool = False  # a file that must exist, unless the value is one of `keywords`
    keywords: tuple = ()
    items_low: float | None = None  # each item of a list value at least this
    min_items: int | None = None  # a list value holds at least this many items

    def expects(self) -> str:
        """The accepted values in words (for errors and docs)."""
        parts = []
        if self.choices is not None:
            parts.append("one of " + ", ".join(str(c) for c in self.choices))
        if self.low is not None or self.high is not None:
            low = "-inf" if self.low is None else f"{self.low:g}"
            high = "inf" if self.high is None else f"{self.high:g}"
            parts.append(f"{'(' if self.low_open or self.low is None else '['}{low}, {high}"
                         f"{')' if self.high_open or self.high is None else ']'}")
        if self.path:
            parts.append("an existing file" + (f" or {', '.join(self.keywords)}" if self.keywords else ""))
        if self.items_low is not None:
            parts.append(f"items >= {self.items_low:g}")
        if self.min_items is not None:
            parts.append(f"at least {self.min_items} item(s)")
        return "; ".join(parts)


def setting(default=MISSING, help: str = "", *, factory=MISSING, **rule) -> dataclasses.Field:
    """A dataclass field with its rule and help line."""
    metadata = {"rule": Rule(help=help, **{k: tuple(v) if isinstance(v, list) else v for k, v in rule.items()})}
    if factory is not MISSING:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def rule_of(field: dataclasses.Field) -> Rule:
    return field.metadata.get("rule", Rule())


@functools.lru_cache(maxsize=None)
def nested_classes(cls) -> dict[str, type]:
    """{field name: dataclass} of the fields of `cls` that hold a nested settings dataclass."""
    hints = typing.get_type_hints(cls)
    return {name: hint for name, hint in hints.items() if dataclasses.is_dataclass(hint)}


def check_value(key: str, value, rule: Rule) -> None:
    """A value against its rule (its type was checked before): a ConfigError naming the key, the value and what
    the setting expects."""
    if value is None:
        return
    bad = False
    if isinstance(value, float) and not math.isfinite(value):  # .nan / .inf in YAML: no setting means them
        raise ConfigError(f"config key '{key}' expects a finite number, got {value!r}")
    if rule.choices is not None and value not in rule.choices:
        bad = True
    elif isinstance(value, (int, float)) and not isinstance(value, bool) and (rule.low is not None
                                                                            or rule.high is not None):
        bad = (not math.isfinite(value)
               or (rule.low is not None and (value < rule.low or (rule.low_open and value == rule.low)))
               or (rule.high is not None and (value > rule.high or (rule.high_open and value == rule.high))))
    elif rule.path and isinstance(value, str) and value not in rule.keywords and not Path(value).is_file():
        bad = True
    elif isinstance(value, (list, tuple)) and (rule.items_low is not None or rule.min_items is not None):
        bad = ((rule.min_items is not None and len(value) < rule.min_items)
               or (rule.items_low is not None and any(not isinstance(v, (int, float)) or v < rule.items_low
                                                      for v in value)))
    if bad:
        raise ConfigError(f"config key '{key}' expects {rule.expects()}, got {value!r}")


def check_settings(where: str, values: dict, cls) -> None:
    """Every key of `values` a field of `cls`, with a value of its type, choice and range; nested settings
    dataclasses checked the same way. Keys absent from `values` keep their (valid) defaults."""
    if not isinstance(values, dict):
        raise ConfigError(f"config key '{where}' expects a mapping of settings, got {values!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    nested = nested_classes(cls)
    for key, value in values.items():
        dotted = f"{where}.{key}" if where else key
        if key not in fields:
            raise ConfigError(f"unknown config key '{dotted}' (known: {sorted(fields)})")
        if key in nested and (isinstance(value, dict) or dataclasses.is_dataclass(value)):
            check_settings(dotted, value if isinstance(value, dict) else dataclasses.asdict(value), nested[key])
            continue
        check_type(dotted, value, str(fields[key].type))
        check_value(dotted, value, rule_of(fields[key]))


def check_instance(settings, where: str = "") -> None:
    """The rules of a constructed settings dataclass (its __post_init__ calls this): a ValueError naming the field."""
    for field in dataclasses.fields(settings):
        if field.name not in nested_classes(type(settings)):
            check_value(f"{where}{field.name}", getattr(settings, field.name), rule_of(field))


_SCALARS = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,), "dict": (dict,)}


def check_type(key: str, value, declared: str) -> None:
    """A value of a dataclass field against its declared type (`int | None`, `tuple[int, ...]`, ...): a value of
    another type is an error naming the key and the value, before any code compares it."""
    kinds = [part.strip() for part in declared.split("|")]
    if value is None:
        if "None" in kinds:
            return
    elif any(k.startswith("tuple[") for k in kinds):
        items = value if isinstance(value, (list, tuple)) else [value]
        item = next(k for k in kinds if k.startswith("tuple["))[len("tuple["):].split(",")[0].strip("] ")
        allowed = _SCALARS.get(item, (object,))
        if all(isinstance(v, allowed) and not isinstance(v, bool) for v in items):
            return
    else:
        for kind in (k for k in kinds if k != "None"):
            allowed = _SCALARS.get(kind)
            if allowed is None:  # a nested config or a type this check does not know: its own class checks it
                return
            if isinstance(value, allowed) and (kind == "bool" or not isinstance(value, bool)):
                return
    raise ConfigError(f"config key '{key}' expects {declared}, got {value!r}")


def from_plain(cls, values: dict, where: str = ""):
    """The settings dataclass tree `cls` of a checked mapping (`check_settings` first): nested mappings become their
    dataclasses, lists of tuple fields tuples; keys absent keep the field defaults. A value a dataclass's own
    cross-setting checks refuse is a ConfigError naming that dataclass's dotted key."""
    nested = nested_classes(cls)
    hints = typing.get_type_hints(cls)
    built = {}
    for key, value in values.items():
        dotted = f"{where}.{key}" if where else key
        if key in nested and isinstance(value, dict):
            value = from_plain(nested[key], value, dotted)
        elif isinstance(value, list) and "tuple" in str(hints[key]):
            value = tuple(value)
        built[key] = value
    try:
        return cls(**built)
    except ConfigError:
        raise
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{where or cls.__name__}: {error}") from error
