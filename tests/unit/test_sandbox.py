"""The units' sandbox (tasks/core/sandbox.py, tasks/host/units.py): every directive in the web
unit and each companion unit, the paths each may write (from `layout` and the linked paths),
the keys that ask for more (SANDBOX_WRITABLE, SANDBOX_CAPABILITIES, SANDBOX_WITHOUT), a change
waiting for a restart, the docs' table, and this machine's ``systemd-analyze security``."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from tasks import config
from tasks.core import sandbox
from tasks.core.errors import ConfigError, HostError
from tasks.core.paths import Layout
from tasks.host import converge, units

REPO = Path(__file__).resolve().parents[2]
SECURITY = REPO / "docs" / "security.md"


def settings(tmp_path: Path, extra: str = "") -> config.Settings:
    (tmp_path / "config").mkdir(parents=True, exist_ok=True)
    (tmp_path / "config" / "staging.env").write_text(
        "APP_NAME=shop\nBIND=0.0.0.0:8123\nPROCESS_WORKER=celery -A shop worker\n" + extra
    )
    return config.build("staging", tmp_path)


def service_section(unit: str) -> list[str]:
    """The lines of the unit's [Service] section, comments left out."""
    section = unit.split("[Service]\n", 1)[1].split("\n[", 1)[0]
    return [line for line in section.splitlines() if line and not line.startswith("#")]


def values(unit: str, name: str) -> list[str]:
    """The values of every ``name=`` line of the unit's [Service] section."""
    return [line.partition("=")[2] for line in service_section(unit) if line.startswith(f"{name}=")]


def both(conf: config.Settings) -> dict[str, str]:
    return {
        "web": units.render_unit(conf, "shop", "shop"),
        "worker": units.render_process_unit(conf, "worker", "shop", "shop"),
    }


@pytest.mark.parametrize("process", ["web", "worker"])
def test_every_unit_gets_every_directive_in_its_service_section(
    tmp_path: Path, process: str
) -> None:
    unit = both(settings(tmp_path))[process]
    lines = service_section(unit)
    for name, value in sandbox.DIRECTIVES:
        assert f"{name}={value}" in lines, name
    assert values(unit, "ProtectHome") == ["yes"]
    assert values(unit, "CapabilityBoundingSet") == [""]  # empty: no capability at all
    assert values(unit, "AmbientCapabilities") == [""]
    assert values(unit, "SystemCallFilter") == ["@system-service", "~@privileged @resources"]
    assert values(unit, "UMask") == ["0027"] and values(unit, "NoNewPrivileges") == ["yes"]
    names = {line.partition("=")[0] for line in lines}
    assert names >= sandbox.NAMES  # every directive the sandbox may hold is there by default
    assert "$" not in unit.replace("$$", "")


def test_the_web_unit_writes_its_data_logs_and_runtime_files_only(tmp_path: Path) -> None:
    conf = settings(tmp_path, "LINKED_DIRS=media,data\nLINKED_FILES=instance/app.cfg\n")
    paths = Layout("/srv/shop", "shop")
    data = [f"{paths.shared}/media", f"{paths.shared}/data", f"{paths.shared}/instance/app.cfg"]
    web, worker = both(conf).values()
    assert values(web, "ReadWritePaths") == [" ".join([*data, paths.logs, paths.pids])]
    # a companion process writes no pidfile
    assert values(worker, "ReadWritePaths") == [" ".join([*data, paths.logs])]
    assert paths.current not in " ".join(values(web, "ReadWritePaths"))


def test_writable_paths_follow_the_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every path comes from `layout(settings)`: a layout that moves the runtime files (the
    ownership model's /run/<app>) moves them in the unit too."""
    monkeypatch.setattr(Layout, "pids", property(lambda self: "/run/shop"))
    monkeypatch.setattr(Layout, "logs", property(lambda self: "/var/log/shop"))
    web = units.render_unit(settings(tmp_path, "LINKED_DIRS=media\n"), "shop", "shop")
    assert values(web, "ReadWritePaths") == ["/srv/shop/shared/media /var/log/shop /run/shop"]


def test_writable_paths_escape_systemd_specifiers(tmp_path: Path) -> None:
    web = units.render_unit(settings(tmp_path, "DEPLOY_ROOT=/opt/my%app\n"), "shop", "shop")
    assert values(web, "ReadWritePaths") == ["/opt/my%%app/shared/log /run/shop"]


def test_sandbox_writable_adds_paths_to_every_unit_once(tmp_path: Path) -> None:
    extra = "SANDBOX_WRITABLE=/var/cache/shop/,/var/lib/shop,/var/cache/shop\n"
    for unit in both(settings(tmp_path, extra)).values():
        written = values(unit, "ReadWritePaths")[0].split()
        assert written[-2:] == ["/var/cache/shop", "/var/lib/shop"]
        assert len(written) == len(set(written))


def test_capabilities_are_granted_without_a_private_user_namespace(tmp_path: Path) -> None:
    conf = settings(tmp_path, "SANDBOX_CAPABILITIES=cap_net_bind_service,CAP_SYS_NICE\n")
    assert conf.sandbox_capabilities == ("CAP_NET_BIND_SERVICE", "CAP_SYS_NICE")
    for unit in both(conf).values():
        granted = "CAP_NET_BIND_SERVICE CAP_SYS_NICE"
        assert values(unit, "CapabilityBoundingSet") == [granted]
        assert values(unit, "AmbientCapabilities") == [granted]
        assert values(unit, "PrivateUsers") == []  # a capability in a private userns opens nothing
        assert values(unit, "NoNewPrivileges") == ["yes"]


def test_sandbox_without_leaves_out_the_named_directives(tmp_path: Path) -> None:
    conf = settings(tmp_path, "SANDBOX_WITHOUT=memorydenywriteexecute, SystemCallFilter\n")
    assert conf.sandbox_without == ("MemoryDenyWriteExecute", "SystemCallFilter")
    for unit in both(conf).values():
        assert values(unit, "MemoryDenyWriteExecute") == []
        assert values(unit, "SystemCallFilter") == []  # both lines
        assert values(unit, "SystemCallArchitectures") == ["native"]  # the rest stays
        assert values(unit, "ProtectSystem") == ["strict"]
    home = both(settings(tmp_path, "SANDBOX_WITHOUT=ProtectHome\n"))["web"]
    assert values(home, "ProtectHome") == []


@pytest.mark.parametrize(
    ("extra", "protect"),
    [
        ("DEPLOY_ROOT=/home/deploy/shop\n", "read-only"),
        ("SANDBOX_WRITABLE=/root/cache\n", "read-only"),
        ("SANDBOX_WRITABLE=/run/user/1000/shop\n", "read-only"),
        ("DEPLOY_ROOT=/homes/shop\n", "yes"),
        ("", "yes"),
    ],
)
def test_a_deploy_root_under_a_home_directory_keeps_homes_readable(
    tmp_path: Path, extra: str, protect: str
) -> None:
    for unit in both(settings(tmp_path, extra)).values():
        assert values(unit, "ProtectHome") == [protect]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("SANDBOX_WRITABLE=var/cache", "SANDBOX_WRITABLE: expected an absolute path"),
        ("SANDBOX_WRITABLE=/", "SANDBOX_WRITABLE: expected an absolute path other than '/'"),
        ("SANDBOX_WRITABLE=/var/a b", "SANDBOX_WRITABLE: a path on the hosts may hold only"),
        ("SANDBOX_WRITABLE=/var/../etc", "SANDBOX_WRITABLE: expected an absolute path"),
        ("SANDBOX_CAPABILITIES=CAP_ROOT", "SANDBOX_CAPABILITIES: expected Linux capability names"),
        ("SANDBOX_CAPABILITIES=NET_BIND_SERVICE", "SANDBOX_CAPABILITIES: expected Linux"),
        ("SANDBOX_WITHOUT=User", "SANDBOX_WITHOUT: expected directives of the unit's sandbox"),
        ("SANDBOX_WITHOUT=ReadWritePaths", "SANDBOX_WITHOUT: expected directives"),
    ],
)
def test_bad_sandbox_values_are_refused_naming_the_key(
    tmp_path: Path, line: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        settings(tmp_path, line + "\n")
    assert f"staging.env:4: {expected}" in str(refused.value)


def converge_host(tmp_path: Path, extra: str = "") -> SimpleNamespace:
    return SimpleNamespace(name="web1", app_user="shop", settings=settings(tmp_path, extra))


@pytest.mark.parametrize(
    ("extra", "line"),
    [
        ("LINKED_DIRS=uploads\n", "ReadWritePaths=/srv/shop/shared/uploads"),
        ("SANDBOX_CAPABILITIES=CAP_NET_BIND_SERVICE\n", "CapabilityBoundingSet=CAP_NET"),
        ("SANDBOX_WITHOUT=MemoryDenyWriteExecute\n", "MemoryDenyWriteExecute=yes"),  # removed
    ],
)
def test_a_sandbox_change_waits_for_a_restart(tmp_path: Path, extra: str, line: str) -> None:
    """A running master keeps its namespaces across a USR2 re-exec: a deploy refuses a change
    of the sandbox, naming the commands that apply it (setup, then a restart)."""
    old = converge_host(tmp_path / "old")
    files = {t.path: t.text for t in converge.targets(old, "shop")}
    found = converge.OnHost("shop", files)
    assert not converge.drift(converge_host(tmp_path / "same"), found)
    with pytest.raises(HostError) as refused:
        converge.drift(converge_host(tmp_path / "new", extra), found)
    message = refused.value.detail
    assert line in message and "changed nothing" in message
    assert "`fab staging setup`, then `fab staging run.restart --process all`" in message


def test_restart_only_counts_removed_sandbox_lines_only() -> None:
    assert converge.restart_only("a\nUMask=0027\n", "a\n") == ["UMask=0027"]
    assert converge.restart_only("a\nRestartSec=2\n", "a\n") == []


def documented() -> set[str]:
    """The directives named in docs/security.md's "What the unit forbids" table."""
    section = SECURITY.read_text().split("## What the unit forbids\n", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([A-Za-z]+)=[^`]*` \|", section, re.M))


def test_every_directive_is_in_the_docs_table() -> None:
    assert documented() == set(sandbox.NAMES)


def analyze() -> str | None:
    """This machine's systemd-analyze when it rates unit files offline (systemd >= 250)."""
    tool = shutil.which("systemd-analyze")
    if tool is None:
        return None
    probe = subprocess.run(
        [tool, "security", "--help"], capture_output=True, text=True, check=False
    )
    return tool if "--offline" in probe.stdout else None


def exposure(tool: str, folder: Path, name: str, text: str) -> float:
    """``systemd-analyze security --offline=true``'s overall exposure of unit ``text``."""
    (folder / name).write_text(text)
    rated = subprocess.run(
        [tool, "security", "--offline=true", "--no-pager", name],
        cwd=folder,
        capture_output=True,
        text=True,
        check=False,
    )
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", rated.stdout)
    assert found, rated.stdout + rated.stderr
    return float(found.group(1))


@pytest.mark.parametrize("extra", ["", "SANDBOX_CAPABILITIES=CAP_NET_BIND_SERVICE\n"])
def test_systemd_analyze_rates_every_unit_at_most_4(tmp_path: Path, extra: str) -> None:
    """The rendered units as this machine's systemd rates them (the integration tests rate
    the installed units on Debian 12 and 13)."""
    tool = analyze()
    if tool is None:
        pytest.skip("no systemd-analyze that rates unit files offline (systemd >= 250) here")
    conf = settings(tmp_path, "LINKED_DIRS=media\n" + extra)
    for process, text in both(conf).items():
        name = units.unit_name(conf, process)
        assert exposure(tool, tmp_path, name, text) <= 4.0, name
