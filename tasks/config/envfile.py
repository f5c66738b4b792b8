"""The env-file format: ``KEY=value`` lines, read with python-dotenv without interpolation
(``${VAR}`` stays literal, so nothing from the developer's shell leaks into a server)."""

from __future__ import annotations

from pathlib import Path

from dotenv.parser import parse_stream

from ..core.errors import ConfigError


def read_env_file(path: Path, *, what: str = "environment file") -> dict[str, tuple[str, int]]:
    """Parse ``path`` into ``{KEY: (value, line)}``; a missing or unparsable file is an error."""
    if not path.is_file():
        raise ConfigError(f"{path}: {what} not found")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read {what}: {exc}") from None
    found: dict[str, tuple[str, int]] = {}
    for binding in parse_stream(_Stream(text)):
        raw = binding.original.string
        line = binding.original.line + raw[: len(raw) - len(raw.lstrip())].count("\n")
        if binding.error:
            snippet = binding.original.string.strip().splitlines()[0][:60]
            raise ConfigError(f"{path}:{line}: cannot parse {snippet!r} (expected KEY=value)")
        if binding.key is None:
            continue
        if binding.key in found:
            first = found[binding.key][1]
            raise ConfigError(f"{path}:{line}: {binding.key}: set twice (first on line {first})")
        found[binding.key] = (binding.value or "", line)
    return found


class _Stream:
    """The minimal text stream `parse_stream` reads."""

    def __init__(self, text: str) -> None:
        self._text = text

    def read(self) -> str:
        return self._text
