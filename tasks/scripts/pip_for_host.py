"""Run pip with another Python's environment-marker values: ``python pip_for_host.py MARKERS
ARGS...``, MARKERS a JSON object such as ``{"sys_platform": "linux", ...}``.

pip's ``--platform``, ``--python-version`` and friends choose wheels for another
interpreter, but pip evaluates requirement markers (``greenlet; platform_machine ==
"x86_64"``, ``uvloop; sys_platform != "win32"``) against the Python that runs it. This
wrapper, run by fabdeploy on the deploying machine, makes pip's marker evaluation see the
host's values instead. Where pip's internals differ (no vendored ``packaging.markers``), pip
runs unchanged.
"""

import json
import sys


def patch_markers(values):
    """Make pip's vendored packaging evaluate markers with ``values`` over the local ones."""
    try:
        from pip._vendor.packaging import markers
    except ImportError:
        return
    local = getattr(markers, "default_environment", None)
    if local is None:
        return

    def host_environment():
        environment = dict(local())
        environment.update(values)
        return environment

    markers.default_environment = host_environment


def main(argv):
    """Patch the markers with ``argv[0]``'s values, then run pip with the rest."""
    patch_markers(json.loads(argv[0]) if argv and argv[0] else {})
    from pip._internal.cli.main import main as pip_main

    return pip_main(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
