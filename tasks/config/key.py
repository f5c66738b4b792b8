"""A key of an env file, declared once: as the dataclass field it fills (`setting`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

#: Where a `setting` field's metadata holds its `Key`.
KEY = "fabdeploy.key"


@dataclass(frozen=True)
class Loaded:
    """What a key's `Key.resolve` sees besides its own value: the project (the directory
    holding ``config/``), every key's parsed value, and the roles (``ROLE_<NAME>``)."""

    project: Path
    values: Mapping[str, Any]
    roles: Mapping[str, tuple[str, ...]]


@dataclass(frozen=True)
class Key:
    """One setting of an env file: its name, parser, default and one line of help."""

    name: str
    parse: Callable[[str], Any]
    default: str
    help: str
    required: bool = False
    #: Makes the field's value of the parsed one, when they differ (a path made absolute, an
    #: empty value's derived default); None: the parsed value is the field's.
    resolve: Callable[[Any, Loaded], Any] | None = None

    def value(self, loaded: Loaded) -> Any:
        """This key's field value: its parsed value in ``loaded``, resolved."""
        parsed = loaded.values[self.name]
        return self.resolve(parsed, loaded) if self.resolve else parsed


def setting(
    name: str,
    parse: Callable[[str], Any],
    default: str,
    help: str,
    *,
    required: bool = False,
    resolve: Callable[[Any, Loaded], Any] | None = None,
) -> Any:
    """A dataclass field filled from the env-file key ``name``: the key's one declaration.
    ``default`` is the text an absent key reads as (never parsed for a required key)."""
    return dataclasses.field(metadata={KEY: Key(name, parse, default, help, required, resolve)})


def declared(cls: type) -> dict[str, Key]:
    """The `setting` fields of the dataclass ``cls``, field name -> key, in field order."""
    return {f.name: f.metadata[KEY] for f in dataclasses.fields(cls) if KEY in f.metadata}


def field_values(cls: type, loaded: Loaded) -> dict[str, Any]:
    """Every `setting` field of ``cls``, field name -> its key's value in ``loaded``."""
    return {name: key.value(loaded) for name, key in declared(cls).items()}
