"""Value parsers: an env file's text -> a typed, validated value, or a ValueError saying
what was expected (the caller adds file, line and key)."""

from __future__ import annotations

import re
import unicodedata
from typing import Callable

from packaging.specifiers import InvalidSpecifier, SpecifierSet

from ..core import sandbox

#: A lowercase name: of the app, an environment, a process or a role.
NAME = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_HOST = re.compile(
    r"^(?:(?P<user>[A-Za-z0-9._-]+)@)?(?P<host>[A-Za-z0-9.:_\[\]-]+?)(?::(?P<port>\d+))?$"
)
_USER = re.compile(r"^[A-Za-z_][A-Za-z0-9._-]{0,31}\$?$")
#: Characters a path sent to the hosts may hold: nothing a shell or systemd would interpret.
_PATH_CHARS = re.compile(r"^[A-Za-z0-9._%+@=,/-]+$")
_COMMAND_NAME = re.compile(r"^[A-Za-z0-9._+-]+$")
_ADDRESS = re.compile(r"^[A-Za-z0-9.*:\[\]_-]*$")
#: What a URL path may hold (RFC 3986 characters; no quotes, backslash, backtick or spaces).
_URL_PATH = re.compile(r"^/[A-Za-z0-9._~!$&'()*+,;=:@/%?-]*$")
_URL = re.compile(r"^(?:https?|file)://[A-Za-z0-9._~!$&'()*+,;=:@/%?\[\]-]+$")
_GLOB = re.compile(r"^[A-Za-z0-9._*?\[\]/-]+$")
#: Names fabdeploy itself puts in a release: never a linked path.
RESERVED_IN_RELEASE = frozenset({".venv", ".env", "REVISION"})


#: Characters that end a line somewhere (Python's ``splitlines``) without being control ones.
_LINE_SEPARATORS = frozenset("\u2028\u2029")


def control_character(raw: str) -> str | None:
    """The first control character in ``raw`` (Unicode's Cc: U+0000-U+001F, U+007F-U+009F,
    so a newline, a carriage return, a tab, NUL, ESC) or line separator (U+2028, U+2029),
    as ``repr`` shows it with its position (``'\\n' at character 12``); None if it has none."""
    for index, char in enumerate(raw):
        if char in _LINE_SEPARATORS or unicodedata.category(char) == "Cc":
            return f"{char!r} at character {index + 1}"
    return None


def command(raw: str) -> str:
    """A shell command: run as written, on purpose (the one kind of value never quoted)."""
    if "\0" in raw:
        raise ValueError("a command may not contain NUL")
    return raw


def name(raw: str) -> str:
    """A lowercase name: of the app, an environment, a process or a role."""
    if not NAME.match(raw):
        raise ValueError(
            "expected a lowercase name (letters, digits, '-', '_'; starting with a letter)"
        )
    return raw


def whole(minimum: int) -> Callable[[str], int]:
    """A parser of whole numbers of at least ``minimum``."""

    def parse(raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ValueError(f"expected a whole number >= {minimum}, got {raw!r}") from None
        if value < minimum:
            raise ValueError(f"expected a whole number >= {minimum}, got {value}")
        return value

    return parse


def choice(*choices: str) -> Callable[[str], str]:
    """A parser of one of ``choices`` (any case; returned in lowercase)."""

    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {raw!r}")
        return value

    return parse


def yes_no(raw: str) -> bool:
    """yes/true/on/1 or no/false/off/0/empty."""
    lowered = raw.strip().lower()
    if lowered in {"1", "yes", "true", "on"}:
        return True
    if lowered in {"0", "no", "false", "off", ""}:
        return False
    raise ValueError(f"expected yes or no, got {raw!r}")


def comma_list(raw: str) -> tuple[str, ...]:
    """Comma-separated items, stripped; empty items dropped."""
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def user(raw: str) -> str:
    """A user name, or empty."""
    if raw and not _USER.match(raw):
        raise ValueError(f"expected a user name (letters, digits, '.', '_', '-'), got {raw!r}")
    return raw


def abs_path(raw: str) -> str:
    """An absolute path on the hosts other than ``/``, without a trailing slash; or empty."""
    if not raw:
        return ""
    if not raw.startswith("/") or raw.rstrip("/") == "" or ".." in raw.split("/"):
        raise ValueError(f"expected an absolute path other than '/' and without '..', got {raw!r}")
    if not _PATH_CHARS.match(raw):
        raise ValueError(
            f"a path on the hosts may hold only letters, digits and . _ % + @ = , / -, got {raw!r}"
        )
    return raw.rstrip("/")


def abs_paths(raw: str) -> tuple[str, ...]:
    """Comma-separated absolute paths on the hosts (each as `abs_path` checks it)."""
    return tuple(abs_path(path) for path in comma_list(raw))


def capabilities(raw: str) -> tuple[str, ...]:
    """Comma-separated Linux capability names (``CAP_NET_BIND_SERVICE``), any case."""
    names = tuple(item.upper() for item in comma_list(raw))
    for item in names:
        if item not in sandbox.CAPABILITIES:
            raise ValueError(
                "expected Linux capability names such as CAP_NET_BIND_SERVICE "
                f"(capabilities(7)), got {item!r}"
            )
    return names


def sandbox_directives(raw: str) -> tuple[str, ...]:
    """Comma-separated names of the unit's sandbox directives (``MemoryDenyWriteExecute``)."""
    known = {name.lower(): name for name in sandbox.OPTIONAL}
    names = comma_list(raw)
    for item in names:
        if item.lower() not in known:
            raise ValueError(
                f"expected directives of the unit's sandbox ({', '.join(sorted(known.values()))}), "
                f"got {item!r}"
            )
    return tuple(known[item.lower()] for item in names)


def local_path(raw: str) -> str:
    """A path on this machine: anything on one line."""
    if any(ch in raw for ch in "\n\r\0"):
        raise ValueError("a path may not contain a newline or NUL")
    return raw


def relative_file(raw: str) -> str:
    """A file inside APP_DIR, named relative to it."""
    if raw.startswith("/") or ".." in raw.split("/") or raw.startswith("-"):
        raise ValueError(f"expected a relative path inside APP_DIR (no '..'), got {raw!r}")
    if not _PATH_CHARS.match(raw):
        raise ValueError(
            f"expected a file name of letters, digits and . _ % + @ = , / -, got {raw!r}"
        )
    return raw


def optional_relative_file(raw: str) -> str:
    """A file inside APP_DIR, or empty."""
    return relative_file(raw) if raw else ""


def linked(raw: str) -> tuple[str, ...]:
    """Paths inside the app that live in shared/ (LINKED_DIRS, LINKED_FILES)."""
    paths = comma_list(raw)
    for path in paths:
        parts = path.strip("/").split("/")
        if (
            path.startswith("/")
            or not _PATH_CHARS.match(path)
            or any(part in ("", ".", "..") for part in parts)
            or path.startswith("-")
            or parts[0] in RESERVED_IN_RELEASE
        ):
            raise ValueError(
                "expected paths relative to the app's directory (letters, digits and "
                f". _ % + @ = , / -; no '..', not {', '.join(sorted(RESERVED_IN_RELEASE))}), "
                f"got {path!r}"
            )
    return tuple(path.strip("/") for path in paths)


def build_outputs(raw: str) -> tuple[str, ...]:
    """Paths inside APP_DIR a build command makes (BUILD_OUTPUTS): `linked`'s rules."""
    return linked(raw)


def source_globs(raw: str) -> tuple[str, ...]:
    """Comma-separated file names, directories or globs relative to APP_DIR (BUILD_INPUTS)."""
    patterns = comma_list(raw)
    for pattern in patterns:
        if not _GLOB.match(pattern) or pattern.startswith("/") or ".." in pattern.split("/"):
            raise ValueError(
                "expected files, directories or globs relative to APP_DIR (letters, digits, "
                f". _ - / * ? []; no '..'), got {pattern!r}"
            )
    return patterns


def primary(raw: str) -> str:
    """One host, ``[user@]host[:port]``, or empty."""
    if raw and not _HOST.match(raw.strip()):
        raise ValueError(f"expected [user@]host[:port] of one of the hosts, got {raw!r}")
    return raw.strip()


def python(raw: str) -> str:
    """A Python interpreter on the hosts: an absolute path or a plain command name."""
    value = raw.strip()
    is_path = value.startswith("/") and _PATH_CHARS.match(value) and ".." not in value.split("/")
    if not (is_path or _COMMAND_NAME.match(value)) or value.startswith("-"):
        raise ValueError(
            "expected an absolute path or a plain command name such as python3 or "
            f"/usr/bin/python3.12 (no spaces, arguments or shell characters), got {raw!r}"
        )
    return value


def specifier(raw: str) -> str:
    """A PEP 440 version specifier (``>=3.11``, ``>=3.10,<3.14``), or empty."""
    value = raw.strip()
    if not value:
        return ""
    try:
        return str(SpecifierSet(value))
    except InvalidSpecifier:
        raise ValueError(
            f"expected a PEP 440 version specifier such as >=3.12 or >=3.10,<3.14, got {raw!r}"
        ) from None


def url(raw: str) -> str:
    """An http(s):// or file:// URL, or empty."""
    if raw and not _URL.match(raw):
        raise ValueError(
            f"expected an http(s):// or file:// URL without spaces or quotes, got {raw!r}"
        )
    return raw


def globs(raw: str) -> tuple[str, ...]:
    """Comma-separated file names or globs under shared/log."""
    patterns = comma_list(raw)
    for pattern in patterns:
        if not _GLOB.match(pattern) or ".." in pattern.split("/"):
            raise ValueError(
                "expected file names or globs under shared/log (letters, digits, . _ - / * ? []), "
                f"got {pattern!r}"
            )
    return patterns


def bind(raw: str) -> str:
    """``HOST:PORT`` to listen on."""
    host, sep, port = raw.rpartition(":")
    if (
        not sep
        or not host
        or not _ADDRESS.match(host)
        or not port.isdigit()
        or not 0 < int(port) < 65536
    ):
        raise ValueError(f"expected HOST:PORT such as 127.0.0.1:8000, got {raw!r}")
    return raw


def url_path(raw: str) -> str:
    """A URL path: ``/`` and RFC 3986 characters."""
    if not _URL_PATH.match(raw):
        raise ValueError(
            f"expected a URL path starting with '/' (no spaces, quotes or backslashes), got {raw!r}"
        )
    return raw


#: A Host header: a name or address, or a bracketed IPv6 address, and an optional port.
_HOST_HEADER = re.compile(
    r"^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$"
)


def host_header(raw: str) -> str:
    """A Host header (``name[:port]``), or empty."""
    if raw and not _HOST_HEADER.match(raw):
        raise ValueError(
            f"expected a host name the app accepts, such as example.com or example.com:443, "
            f"got {raw!r}"
        )
    return raw


def wsgi(raw: str) -> str:
    """A WSGI target, ``MODULE:CALLABLE``."""
    if not re.match(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.()]*$", raw):
        raise ValueError(f"expected MODULE:CALLABLE such as app:app, got {raw!r}")
    return raw


#: gunicorn's own worker classes (``-k NAME``); anything else is a dotted path to a class.
GUNICORN_WORKERS = frozenset({"sync", "gthread", "eventlet", "gevent", "tornado"})


def worker_class(raw: str) -> str:
    """One of gunicorn's worker classes, or a dotted path to a class."""
    value = raw.strip()
    if value in GUNICORN_WORKERS or re.match(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$", value):
        return value
    raise ValueError(
        "expected one of gunicorn's worker classes (sync, gthread, gevent, eventlet, tornado) or "
        f"a dotted class path such as uvicorn_worker.UvicornWorker, got {raw!r}"
    )


def release_file(raw: str) -> str:
    """A .py file inside the app's directory, or empty."""
    if not raw:
        return ""
    parts = raw.split("/")
    if raw.startswith("/") or ".." in parts or not re.match(r"^[\w./-]+\.py$", raw):
        raise ValueError(f"expected a .py file relative to the app's directory, got {raw!r}")
    return raw


def batch(raw: str) -> str:
    """Counts or percentages, comma-separated: hosts switched a round."""
    items = [item.strip() for item in raw.split(",")]
    for value in items:
        number = value[:-1] if value.endswith("%") else value
        if not number.isdigit() or int(number) < 1 or (value.endswith("%") and int(number) > 100):
            raise ValueError(
                "expected a count such as 2, a percentage such as 25%, or a list of them "
                f"such as 1,25% (one canary host, then a quarter of the fleet a round), got {raw!r}"
            )
    return ",".join(items)


def hosts(raw: str) -> tuple[str, ...]:
    """Comma-separated hosts, each ``[user@]host[:port]``."""
    names = comma_list(raw)
    for host in names:
        if not _HOST.match(host):
            raise ValueError(f"expected [user@]host[:port], got {host!r}")
    return names


def url_paths(raw: str) -> tuple[str, ...]:
    """Comma-separated URL paths (`url_path` each), or empty."""
    return tuple(url_path(item) for item in comma_list(raw))
