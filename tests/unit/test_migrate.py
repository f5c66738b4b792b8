"""Where migrations run (MIGRATE_ON), the host-local database warning, Ctrl-C during a
migration in the flow, and cleanup of releases that never served (issue 19, items 4 and 6).
What these prove against the runner is proven once on real hosts in
tests/integration/test_migrate.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks import config
from tasks.core.errors import ConfigError, FabdeployError
from tasks.core.records import Audit
from tasks.host import migrate, releases
from tests.unit.test_deploy import R, fleet, prepare


def settings(tmp_path: Path, text: str, secrets: str = "") -> config.Settings:
    (tmp_path / "config").mkdir(exist_ok=True)
    if secrets:
        (tmp_path / "secrets.env").write_text(secrets)
        text += "SECRETS_FILE=secrets.env\n"
    (tmp_path / "config" / "staging.env").write_text("APP_NAME=shop\n" + text)
    return config.build("staging", tmp_path)


FLEET = "HOSTS=web1,web2\nMIGRATE_COMMAND=python manage.py migrate\n"


@pytest.mark.parametrize(
    ("text", "secrets", "why"),
    [
        ("LINKED_FILES=db.sqlite3\n", "", "LINKED_FILES has db.sqlite3"),
        ("LINKED_DIRS=media,var/app.db\n", "", "LINKED_DIRS has var/app.db"),
        ("", "DATABASE_URL=sqlite:////srv/shop/shared/db.sqlite3\n", "the secret DATABASE_URL"),
    ],
)
def test_a_fleet_migrating_only_the_primary_with_a_host_local_database_is_warned(
    tmp_path: Path, text: str, secrets: str, why: str
) -> None:
    found = settings(tmp_path, FLEET + text, secrets)
    warning = migrate.local_database_warning(found, ["web1", "web2"])
    assert why in warning and "MIGRATE_ON=all" in warning
    assert "primary host only (web1)" in warning and "2 hosts serve the web" in warning
    assert "sqlite:////srv" not in warning  # a secret's value is never shown


@pytest.mark.parametrize(
    ("text", "hosts"),
    [
        (FLEET + "LINKED_FILES=db.sqlite3\nMIGRATE_ON=all\n", ["web1", "web2"]),
        (FLEET + "LINKED_FILES=db.sqlite3\nMIGRATE_ON=primary\n", ["web1", "web2"]),  # said so
        (FLEET + "LINKED_FILES=db.sqlite3\n", ["web1"]),  # one web host
        (
            FLEET + "LINKED_FILES=db.sqlite3\nROLE_WEB=web1\nROLE_WORKER=web2\nPROCESS_WORKER=x\n",
            ["web1", "web2"],
        ),  # web2 runs only the worker
        (FLEET + "LINKED_DIRS=media\n", ["web1", "web2"]),  # nothing looks host-local
        ("HOSTS=web1,web2\nLINKED_FILES=db.sqlite3\n", ["web1", "web2"]),  # no migration
    ],
)
def test_no_warning_when_every_database_is_migrated_or_shared(
    tmp_path: Path, text: str, hosts: list[str]
) -> None:
    assert migrate.local_database_warning(settings(tmp_path, text), hosts) == ""


def test_migrate_on_names_the_hosts_and_refuses_other_values(tmp_path: Path) -> None:
    primary = settings(tmp_path, FLEET + "PRIMARY_HOST=web2\n")
    assert migrate.hosts(primary, ["web1", "web2"]) == ["web2"]
    assert "once, on the primary host web2" in migrate.where_line(primary, ["web1", "web2"])
    every = settings(tmp_path, FLEET + "MIGRATE_ON=all\n")
    assert migrate.hosts(every, ["web1", "web2"]) == ["web1", "web2"]
    assert "every host (2, MIGRATE_ON=all)" in migrate.where_line(every, ["web1", "web2"])
    assert migrate.hosts(settings(tmp_path, "MIGRATE_ON=all\n"), ["web1"]) == []
    with pytest.raises(ConfigError, match=r"staging.env:4: MIGRATE_ON: expected one of primary"):
        settings(tmp_path, FLEET + "MIGRATE_ON=everywhere\n")
    with pytest.raises(ConfigError, match=r"MIGRATE_TIMEOUT: expected a whole number >= 0"):
        settings(tmp_path, FLEET + "MIGRATE_TIMEOUT=-1\n")


def test_migrate_on_all_migrates_every_host_before_any_smoke_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flow, done = fleet(tmp_path, monkeypatch, "MIGRATE_COMMAND=x\nMIGRATE_ON=all\n")
    prepare(flow)
    assert sorted(d for d in done if d.startswith("migrate")) == [
        "migrate jobs1",
        "migrate web1",
        "migrate web2",
    ]
    last_migrate = max(i for i, d in enumerate(done) if d.startswith("migrate"))
    assert last_migrate < min(i for i, d in enumerate(done) if d.startswith("smoke"))


def test_ctrl_c_during_the_migration_removes_the_release_everywhere_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flow, done = fleet(tmp_path, monkeypatch, "MIGRATE_COMMAND=x\n")

    def interrupted(*args: object) -> None:
        done.append("migrate web1")
        raise KeyboardInterrupt

    monkeypatch.setattr(migrate, "migrate_release", interrupted)
    with pytest.raises(KeyboardInterrupt):
        prepare(flow)
    assert not [d for d in done if d.startswith(("smoke", "switch"))]
    assert sorted(d for d in done if d.startswith("undo")) == ["undo jobs1", "undo web1", "undo web2"]  # fmt: skip
    assert flow.at("web1").result == "migrate interrupted"


def test_a_failed_migration_still_fails_as_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flow, _ = fleet(tmp_path, monkeypatch, "MIGRATE_COMMAND=x\n", fail="migrate web1")
    with pytest.raises(FabdeployError, match="migrate failed on 1 host"):
        prepare(flow)


def served(*names: str) -> str:
    return "\n".join(Audit("t", "deploy", n, "abc", "me", "ok").format() for n in names) + "\n"


def test_a_release_that_never_served_is_removed_and_not_counted(tmp_path: Path) -> None:
    # R0..R3 served; R4 was installed by a deploy interrupted before its switch; R5 serves now
    log = served(R[0], R[1], R[2], R[3]) + Audit("t", "deploy", R[4], "x", "me", "failed").format()
    found = releases.Inventory({r: "v" for r in R[:6]}, [], R[5], ["v"], log + "\n" + served(R[5]))
    assert releases.never_served(found) == [R[4]]
    pruning = releases.plan_prune(found, keep=3, protect=R[3])
    assert pruning.releases == [R[0], R[1], R[4]]  # R4 goes, and is not one of the 3 kept
    assert pruning.kept == 3  # R5 (current), R3 (served before it), R2


def test_without_a_log_every_release_counts_as_before(tmp_path: Path) -> None:
    found = releases.Inventory({r: "v" for r in R[:5]}, [], R[4], ["v"], "")
    assert releases.never_served(found) == []
    assert releases.plan_prune(found, keep=3).releases == R[:2]
