"""Run ``bash -c COMMAND`` with the app's secrets (``.env`` in the cwd) in its environment.

Used on the host by hooks, migrations and ``fab exec``: ``.venv/bin/python with_secrets.py
COMMAND [DIR]`` in a release directory; ``DIR`` (the release) is put first on PYTHONPATH, before
any PYTHONPATH the environment or the secrets set, so ``python scripts/x.py`` imports the app's
own packages as the app does. The file is parsed in fabdeploy's format (``KEY="value"`` lines, ``\\``
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


def main():
    """Read ``.env``, then become ``bash -c COMMAND`` with its secrets in the environment."""
    try:
        # newline="": a \r in a value is kept, as systemd's EnvironmentFile= keeps it
        with open(".env", encoding="utf-8", newline="") as handle:
            text = handle.read()
    except FileNotFoundError:  # an app without secrets
        text = ""
    except OSError as exc:
        sys.exit(f"cannot read the app's secrets ({os.path.realpath('.env')}): {exc.strerror}")
    env = {**os.environ, **parse(text)}
    if len(sys.argv) > 2 and sys.argv[2]:
        env["PYTHONPATH"] = os.pathsep.join(
            [sys.argv[2], *(p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p)]
        )
    os.execvpe("bash", ["bash", "-c", sys.argv[1]], env)


if __name__ == "__main__":
    main()
