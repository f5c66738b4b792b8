"""The errors fabdeploy raises: each prints one clear line and exits non-zero, no traceback."""

from __future__ import annotations

from invoke.exceptions import Exit


class FabdeployError(Exit):
    """A failure the user can act on; invoke prints ``message`` and exits with ``code``."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(f"fabdeploy: {message}", code=code)

    def __str__(self) -> str:
        return self.message or ""


def detail(error: BaseException) -> str:
    """An error's message for a line already prefixed with its host: no ``fabdeploy:`` and no
    ``[host]`` prefix."""
    if isinstance(error, HostError):
        return error.detail
    if isinstance(error, FabdeployError):
        return (error.message or "").removeprefix("fabdeploy: ")
    return f"{type(error).__name__}: {error}"


class ConfigError(FabdeployError):
    """A missing, unparsable or invalid env file; raised before any connection is opened."""

    def __init__(self, message: str) -> None:
        super().__init__(f"config error: {message}", code=2)


class HostError(FabdeployError):
    """A failure on one host; the message starts with the host's name."""

    def __init__(self, host: str, message: str, code: int = 1) -> None:
        self.host = host
        self.detail = message
        super().__init__(f"[{host}] {message}", code=code)
