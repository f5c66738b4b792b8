"""Print, as one JSON line, the wheel tags this Python accepts (run by the host's Python).

fabdeploy's check step runs this file with the host's interpreter, in the session it
already opens, so that packages can be resolved for the host rather than for the machine
that deploys. The answer holds what pip needs to resolve for this interpreter:

    {"implementation": "cp", "python_version": "3.12", "interpreter": "cp312",
     "abis": ["cp312", "abi3", "none"], "platforms": ["manylinux_2_36_x86_64", ...],
     "markers": {"sys_platform": "linux", "platform_machine": "x86_64", ...},
     "source": "packaging"}

``packaging.tags`` answers when it can be imported (on its own or as vendored by pip);
otherwise the tags are derived from ``sysconfig``, ``platform`` and the C library's
version (glibc through ``os.confstr``, musl from its dynamic loader), the way
``packaging.tags`` derives them. ``--derive`` forces the derivation (for tests).

It runs on any Python 3.6+ the host may have: standard library only.
"""

import glob
import json
import os
import platform
import re
import subprocess
import sys
import sysconfig

#: Interpreter names as wheel tags abbreviate them.
SHORT_NAMES = {"cpython": "cp", "pypy": "pp", "ironpython": "ip", "jython": "jy"}
#: glibc versions that have a legacy manylinux name besides manylinux_2_X.
LEGACY_MANYLINUX = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}


def version_text():
    """This Python's X.Y version."""
    return "{}.{}".format(*sys.version_info[:2])


def implementation():
    """The short implementation name: cp for CPython, pp for PyPy."""
    name = sys.implementation.name
    return SHORT_NAMES.get(name, name)


def unique(items):
    """``items`` without repeats, in their first order."""
    seen = []
    for item in items:
        if item not in seen:
            seen.append(item)
    return seen


def from_packaging(tags):
    """The answer from a ``packaging.tags`` module (``packaging`` or pip's vendored copy)."""
    interpreter = tags.interpreter_name() + tags.interpreter_version()
    abis = unique(tag.abi for tag in tags.sys_tags() if tag.interpreter == interpreter)
    return interpreter, abis, list(tags.platform_tags())


def normalized(text):
    """``text`` as a tag part: lowercase, '-' and '.' as '_'."""
    return re.sub(r"[-.]", "_", text).lower()


def derived_abis(interpreter):
    """The ABI tags of this interpreter, most specific first."""
    if implementation() == "cp":
        free_threaded = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
        debug = hasattr(sys, "gettotalrefcount")
        main = interpreter + ("t" if free_threaded else "") + ("d" if debug else "")
        return [main] + ([] if free_threaded else ["abi3"]) + ["none"]
    soabi = sysconfig.get_config_var("SOABI") or ""
    return ([normalized(soabi)] if soabi else []) + ["none"]


def glibc_minor():
    """glibc's minor version (36 for 2.36), or None where the C library is not glibc."""
    try:
        text = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (AttributeError, OSError, ValueError):
        text = ""
    found = re.match(r"glibc (\d+)\.(\d+)", text)
    if not found or found.group(1) != "2":
        return None
    return int(found.group(2))


def musl_minor(arch):
    """musl's minor version (2 for 1.2.4), from its dynamic loader, or None without musl."""
    for loader in sorted(glob.glob("/lib/ld-musl-*.so.1")):
        try:
            result = subprocess.run([loader], capture_output=True, check=False)
        except OSError:
            continue
        found = re.search(r"Version (\d+)\.(\d+)", result.stderr.decode("utf-8", "replace"))
        if found and found.group(1) == "1":
            return int(found.group(2))
    return None


def linux_platforms(arch):
    """manylinux (or musllinux) tags for ``arch``, newest first, then linux_<arch>."""
    found = []
    minor = glibc_minor()
    if minor is not None:
        oldest = 5 if arch in ("x86_64", "i686") else 17
        for version in range(minor, oldest - 1, -1):
            found.append(f"manylinux_2_{version}_{arch}")
            legacy = LEGACY_MANYLINUX.get(version)
            if legacy and (version == 17 or arch in ("x86_64", "i686")):
                found.append(f"{legacy}_{arch}")
    else:
        musl = musl_minor(arch)
        if musl is not None:
            found.extend(f"musllinux_1_{v}_{arch}" for v in range(musl, -1, -1))
    return [*found, "linux_" + arch]


def mac_platforms(arch):
    """macosx tags for this Mac's version and ``arch``, newest first."""
    formats = {"arm64": ["arm64", "universal2"]}.get(
        arch, [arch, "intel", "fat64", "fat32", "universal2", "universal"]
    )
    major, minor = (int(part) for part in (platform.mac_ver()[0] + ".0").split(".")[:2])
    found = []
    for version in range(major, 10, -1):
        found.extend(f"macosx_{version}_0_{form}" for form in formats)
    top = 16 if major >= 11 else minor
    for version in range(top, 3, -1):
        found.extend(f"macosx_10_{version}_{form}" for form in formats)
    return found


def derived_platforms():
    """The platform tags of this machine, most specific first."""
    system = normalized(sysconfig.get_platform())
    is_32bit = sys.maxsize <= 2**32
    if system.startswith("linux_"):
        if is_32bit:
            system = {"linux_x86_64": "linux_i686", "linux_aarch64": "linux_armv8l"}.get(
                system, system
            )
        arch = system.split("_", 1)[1]
        archs = ["armv8l", "armv7l"] if arch == "armv8l" else [arch]
        return unique(tag for one in archs for tag in linux_platforms(one))
    if system.startswith("macosx_"):
        return mac_platforms(platform.machine())
    return [system]


def marker_environment():
    """The values of PEP 508 environment markers for this Python (as packaging computes them),
    so that requirements with markers resolve for the host, not for the deploying machine."""
    info = sys.implementation.version
    version = f"{info.major}.{info.minor}.{info.micro}"
    if info.releaselevel != "final":
        version += info.releaselevel[0] + str(info.serial)
    return {
        "implementation_name": sys.implementation.name,
        "implementation_version": version,
        "os_name": os.name,
        "platform_machine": platform.machine(),
        "platform_release": platform.release(),
        "platform_system": platform.system(),
        "platform_version": platform.version(),
        "python_full_version": platform.python_version(),
        "platform_python_implementation": platform.python_implementation(),
        "python_version": ".".join(platform.python_version_tuple()[:2]),
        "sys_platform": sys.platform,
    }


def answer(derive):
    """The tags as a dict, from packaging.tags unless ``derive`` or it is missing."""
    interpreter = implementation() + version_text().replace(".", "")
    tags, source = None, "derived"
    if not derive:
        try:
            from packaging import tags

            source = "packaging"
        except ImportError:
            try:
                from pip._vendor.packaging import tags

                source = "pip"
            except ImportError:
                tags = None
    if tags is not None:
        interpreter, abis, platforms = from_packaging(tags)
    else:
        abis, platforms = derived_abis(interpreter), derived_platforms()
    return {
        "implementation": implementation(),
        "python_version": version_text(),
        "interpreter": interpreter,
        "abis": abis,
        "platforms": platforms,
        "markers": marker_environment(),
        "source": source,
    }


if __name__ == "__main__":
    print(json.dumps(answer("--derive" in sys.argv[1:]), separators=(",", ":")))
