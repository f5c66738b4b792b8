"""Run ``bash -c COMMAND`` with the app's secrets (``.env`` in the cwd) in its environment.

Used on the host by hooks and ``fab exec``: ``.venv/bin/python with_secrets.py COMMAND`` in a
release directory. The file is parsed as fabdeploy writes it (``KEY="value"`` lines, ``\\``
escapes), never sourced, so no value is ever run by a shell. Nothing is printed, but why a
secrets file that exists cannot be read.
"""

import os
import re
import sys

env = dict(os.environ)
try:
    with open(".env", encoding="utf-8") as handle:
        text = handle.read()
except FileNotFoundError:  # an app without secrets
    text = ""
except OSError as exc:
    sys.exit(f"cannot read the app's secrets ({os.path.realpath('.env')}): {exc.strerror}")
for line in text.splitlines():
    match = re.match(r'^([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"$', line.strip())
    if match:
        env[match.group(1)] = re.sub(r"\\(.)", r"\1", match.group(2))
os.execvpe("bash", ["bash", "-c", sys.argv[1]], env)
