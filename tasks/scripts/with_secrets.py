"""Run ``bash -c COMMAND`` with the app's settings and secrets in its environment.

Used on the host by hooks, migrations and ``fab exec``: ``.venv/bin/python with_secrets.py
COMMAND [DIR [SETTINGS]]`` in a release directory; ``DIR`` (the release; empty: none) is put
first on PYTHONPATH, before any PYTHONPATH the environment or the secrets set, so ``python
scripts/x.py`` imports the app's own packages as the app does. The settings file SETTINGS
(/etc/<app>/settings, the ``ENV_<NAME>`` keys) is read first, then the secrets (``.env`` in
the cwd, a link to /etc/<app>/env): a later file wins, as in the units' EnvironmentFile= lines. The file is parsed in fabdeploy's format (``KEY="value"`` lines, ``\\``
escaping ``\\`` and ``"``, a value with a newline spanning lines: `tasks.core.secretsfile`, which
this copy of `parse` must match; tests/unit/test_secretsfile.py checks it), never sourced, so
no value is ever run by a shell. Nothing is printed, but why a secrets file that exists cannot
be read. Self-contained: no fabdeploy on the host.
"""

import os
import re
import sys

LINE = re.compile(r'^([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"$', re.MULTILINE | re.DOTALL)


def parse(text):
    """The secrets in the file's text (the same as `tasks.core.secretsfile.parse`)."""
    return {
        m.group(1): re.sub(r"\\(.)", r"\1", m.group(2), flags=re.DOTALL)
        for m in LINE.finditer(text)
    }


def read(path, what):
    """The variables of the file ``path`` ({} when there is none)."""
    try:
        # newline="": a \r in a value is kept, as systemd's EnvironmentFile= keeps it
        with open(path, encoding="utf-8", newline="") as handle:
            return parse(handle.read())
    except FileNotFoundError:  # an app without settings or secrets
        return {}
    except OSError as exc:
        sys.exit(f"cannot read the app's {what} ({os.path.realpath(path)}): {exc.strerror}")


def main():
    """Read the settings and ``.env``, then become ``bash -c COMMAND`` with them in the
    environment."""
    settings = read(sys.argv[3], "settings") if len(sys.argv) > 3 and sys.argv[3] else {}
    env = {**os.environ, **settings, **read(".env", "secrets")}
    if len(sys.argv) > 2 and sys.argv[2]:
        env["PYTHONPATH"] = os.pathsep.join(
            [sys.argv[2], *(p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p)]
        )
    os.execvpe("bash", ["bash", "-c", sys.argv[1]], env)


if __name__ == "__main__":
    main()
