"""Import the WSGI target MODULE:CALLABLE from a release, as gunicorn would (scripts/smoke.sh).

Run by the release's Python in the release directory, as the app user:
``python -c "$IMPORT_CODE" CONF MODULE:CALLABLE``, CONF the production gunicorn.conf.py,
whose ``raw_env`` (the app's secrets) is put in the environment first. Prints
``import <target>: ok``; a failing import exits non-zero with its traceback.
"""

import importlib
import os
import runpy
import sys

conf, target = sys.argv[1], sys.argv[2]
for item in runpy.run_path(conf).get("raw_env", []):
    key, _, value = item.partition("=")
    os.environ[key] = value
sys.path.insert(0, os.getcwd())
module_name, _, expression = target.partition(":")
obj = importlib.import_module(module_name)
for part in expression.split("(")[0].split("."):
    obj = getattr(obj, part)
print(f"import {target}: ok")
