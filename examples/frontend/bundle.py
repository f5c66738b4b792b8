"""A tiny frontend "bundler", standing in for `npm run build`: frontend/src/*.js into one
static/app.js (imports and exports dropped, modules in name order), with a header naming the
build. fabdeploy runs it as BUILD_COMMAND in a clean copy of the release's source; git
ignores static/, so only the build step ships it."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCES = HERE / "frontend" / "src"
OUT = HERE / "static"


def bundle() -> str:
    """Every module's code, without its import and export keywords."""
    parts = []
    for module in sorted(SOURCES.glob("*.js")):
        code = re.sub(r"^import .*\n", "", module.read_text(), flags=re.MULTILINE)
        parts.append(f"// {module.name}\n" + code.replace("export ", ""))
    return "\n".join(parts)


def main() -> None:
    code = bundle()
    digest = hashlib.sha256(code.encode()).hexdigest()[:12]
    where = os.environ.get("FABDEPLOY_ENVIRONMENT", "local")
    OUT.mkdir(exist_ok=True)
    (OUT / "app.js").write_text(f"// bundle {digest} built for {where}\n{code}")
    print(f"static/app.js: {len(code)} bytes (bundle {digest})")


if __name__ == "__main__":
    main()
