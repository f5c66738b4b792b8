"""What the deploy's check learns from the host's Python, in one interpreter start.

Run by ``scripts/facts.sh`` as ``PYTHON -c <this file> <host_tags.py's source>``. Prints the
identity ``python -VV`` prints (part of the venv's key: it must stay exactly that), the
platform, ``X.Y``, then ``tags=`` and host_tags.py's JSON, and last ``files=``: the files
whose change would change the answer (the interpreter, venv and ensurepip, the C library),
for facts.sh's cache. Exits 3 when venv or ensurepip cannot be imported (the host needs
``fab setup``). Standard library only, Python 3.6+.
"""

import glob
import json
import os
import sys
import sysconfig

try:
    import ensurepip
    import venv
except ImportError:
    sys.exit(3)
print("Python " + sys.version.replace("\n", " "))  # what `python -VV` prints
print(sysconfig.get_platform())
print("{}.{}".format(*sys.version_info[:2]))
host_tags = {"__name__": "host_tags"}
exec(sys.argv[1], host_tags)
print("tags=" + json.dumps(host_tags["answer"](False), separators=(",", ":")))
libc = ["/lib*/libc.so.6", "/lib/*/libc.so.6", "/usr/lib/*/libc.so.6", "/lib/ld-musl-*.so.1"]
files = [os.path.realpath(sys.executable), venv.__file__, ensurepip.__file__]
print("files=" + " ".join(files + sorted({p for g in libc for p in glob.glob(g)})))
