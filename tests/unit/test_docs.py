"""The manual in docs/ (and README.md) stays true to the code.

* docs/configuration.md documents exactly the keys of `tasks.config.KEYS`, each with the
  code's default: a ``### KEY`` heading per key with a ``Default: `value` `` line (or
  ``Default: empty``, or ``Default: required``) under it, and a summary table whose first
  column is the key and second the default: the table `tasks.config.summary_table` renders
  from the keys' declaration, as is.
* Every ``fab ...`` command in a code block or an inline code span names tasks that exist,
  with options that exist (the task's own, or fab's: -H, -i, ...). Environment words (staging, production, demo, default and the placeholder
  ``<env>``) count as environment tasks. A fenced block whose info string holds the word
  ``own-fabfile`` shows commands of a user's own fabfile and is not checked.
* Every relative link points to an existing file (and, with ``#anchor``, to a heading there).
* Every task has a docstring and a help text for each of its options.
"""

from __future__ import annotations

import functools
import importlib.util
import re
import shlex
import sys
from pathlib import Path
from types import ModuleType

import pytest
from fabric.main import program
from invoke import Collection, Task
from invoke.parser import Argument

from tasks import config
from tests.unit.test_config import NEW_KEY_ROW, grown_keys

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
PAGES = [*sorted(DOCS.glob("*.md")), REPO / "README.md"]
CONFIGURATION = DOCS / "configuration.md"
#: Words that select an environment in examples, whether or not config/ has that file.
ENVIRONMENT_WORDS = {"staging", "production", "demo", "default", "<env>", "<environment>"}
#: The info-string word marking a block of commands for a user's own fabfile (not checked).
OWN_FABFILE = "own-fabfile"

KEY_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")


def rel(path: Path) -> str:
    try:
        return str(path.relative_to(REPO))
    except ValueError:
        return str(path)


# --- reading markdown ----------------------------------------------------------------------


def code_blocks(text: str) -> list[tuple[str, int, list[str]]]:
    """Fenced code blocks: (info string, first line number, lines)."""
    blocks: list[tuple[str, int, list[str]]] = []
    fence = ""
    info, start, lines = "", 0, []
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not fence:
            match = re.match(r"^(`{3,}|~{3,})(.*)$", stripped)
            if match:
                fence, info, start, lines = match.group(1), match.group(2).strip(), number + 1, []
        elif stripped.startswith(fence) and stripped.strip(fence[0]) == "":
            blocks.append((info, start, lines))
            fence = ""
        else:
            lines.append(line)
    return blocks


def prose(text: str) -> list[tuple[int, str]]:
    """Lines outside fenced code blocks, numbered."""
    out, fence = [], ""
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not fence:
            match = re.match(r"^(`{3,}|~{3,})", stripped)
            if match:
                fence = match.group(1)
                continue
            out.append((number, line))
        elif stripped.startswith(fence) and stripped.strip(fence[0]) == "":
            fence = ""
    return out


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[`*]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    for _, line in prose(path.read_text(encoding="utf-8")):
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            base = slug(match.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


# --- 1. configuration.md documents exactly KEYS, with their defaults -----------------------


def documented_keys(text: str) -> tuple[dict[str, str | None], dict[str, str]]:
    """From configuration.md: {KEY: default under its ### heading} and {KEY: table default}.

    A default is the text of the first ``Default:`` line after the heading: the contents of
    its first code span, or "" for ``Default: empty``; None when the section has none.
    """
    sections: dict[str, str | None] = {}
    table: dict[str, str] = {}
    current = None
    for _, line in prose(text):
        heading = re.match(r"^###\s+(.*?)\s*$", line)
        if heading:
            name = heading.group(1).strip("` ")
            current = name if KEY_NAME.match(name) else None
            if current is not None:
                assert current not in sections, f"### {current} appears twice"
                sections[current] = None
            continue
        if line.startswith("#"):
            current = None
            continue
        if current is not None and sections[current] is None and line.startswith("Default:"):
            sections[current] = default_text(line.partition(":")[2])
        row = re.match(r"^\|\s*\[?`?([A-Z][A-Z0-9_]*)`?\]?(?:\([^)]*\))?\s*\|([^|]*)\|", line)
        if row:
            table[row.group(1)] = default_text(row.group(2))
    return sections, table


#: How configuration.md writes the default of a required key: ``Default: required``.
REQUIRED = "<required>"


def default_text(cell: str) -> str:
    cell = cell.strip()
    if cell.lower().startswith("empty") or cell in ("", "-"):
        return ""
    if cell.lower().startswith("required"):
        return REQUIRED
    span = re.search(r"`([^`]*)`", cell)
    return span.group(1) if span else cell


def test_configuration_page_documents_exactly_the_keys_with_their_defaults() -> None:
    sections, table = documented_keys(CONFIGURATION.read_text(encoding="utf-8"))
    keys = [key.name for key in config.KEYS]
    missing = [k for k in keys if k not in sections]
    unknown = [k for k in sections if k not in config.KEYS_BY_NAME]
    assert not missing, f"{rel(CONFIGURATION)}: no ### section for {missing}"
    assert not unknown, f"{rel(CONFIGURATION)}: ### sections for keys the code lacks: {unknown}"
    assert sorted(table) == sorted(keys), (
        f"{rel(CONFIGURATION)}: the summary table's keys differ from KEYS: "
        f"missing {sorted(set(keys) - set(table))}, unknown {sorted(set(table) - set(keys))}"
    )
    wrong = []
    for key in config.KEYS:
        expected = REQUIRED if key.required else key.default
        if sections[key.name] != expected:
            wrong.append(f"### {key.name}: documents {sections[key.name]!r}, code {expected!r}")
        if table[key.name] != expected:
            wrong.append(f"table row {key.name}: documents {table[key.name]!r}, code {expected!r}")
    assert not wrong, f"{rel(CONFIGURATION)}: wrong defaults:\n" + "\n".join(wrong)


def test_documented_keys_parser_sees_keys_defaults_and_strays() -> None:
    text = (
        "| Key | Default |\n|---|---|\n| `A_KEY` | `1` |\n| [`B`](#b) | empty |\n\n"
        "| `C` | required |\n\n"
        "### A_KEY\n\nDefault: `1`\n\n## Other\n\n### B\n\nDefault: empty\n\n"
        "### Not a key\n\nDefault: `x`\n\n### C\n\nText.\n\nDefault: required\n\n### D\n"
    )
    sections, table = documented_keys(text)
    assert sections == {"A_KEY": "1", "B": "", "C": REQUIRED, "D": None}
    assert table == {"A_KEY": "1", "B": "", "C": REQUIRED}


def summary_of(text: str) -> str:
    """The table under configuration.md's ``## Summary`` heading, its lines as written."""
    lines = text.splitlines()
    rows: list[str] = []
    for line in lines[lines.index("## Summary") + 1 :]:
        if line.startswith("|"):
            rows.append(line)
        elif rows:
            break
    return "".join(row + "\n" for row in rows)


def test_configuration_summary_is_the_table_rendered_from_the_declaration() -> None:
    assert summary_of(CONFIGURATION.read_text(encoding="utf-8")) == config.summary_table(), (
        f"{rel(CONFIGURATION)}: the Summary table differs from the keys' declaration; put in "
        "its place: python -c 'import tasks.config as c; print(c.summary_table(), end=\"\")'"
    )


def test_summary_reader_takes_the_table_under_its_heading_only() -> None:
    text = "# Page\n\n| x |\n\n## Summary\n\n| a |\n| b |\n\nText.\n\n| c |\n"
    assert summary_of(text) == "| a |\n| b |\n"
    with pytest.raises(ValueError):
        summary_of("# A page without a summary\n")


def test_a_key_added_to_the_declaration_fails_the_page_checks() -> None:
    page = CONFIGURATION.read_text(encoding="utf-8")
    table = config.summary_table(grown_keys())
    assert NEW_KEY_ROW in table.splitlines()
    assert summary_of(page) != table
    sections, rows = documented_keys(page)
    assert "NEW_KEY" not in sections and "NEW_KEY" not in rows
    sections, rows = documented_keys(table)
    assert rows["NEW_KEY"] == "7" and sorted(rows) == sorted(k.name for k in grown_keys())


# --- 2. fab commands name tasks that exist -------------------------------------------------


@functools.cache
def root() -> Collection:
    import tasks

    return tasks.namespace(project_dir=REPO)


@functools.cache
def core_options() -> dict[str, Argument]:
    """fab's own flags (-H, -i, --list, ...) by every name they go by."""
    found = {}
    for arg in program.core_args() + program.task_args():
        for name in arg.names:
            found[("-" if len(name) == 1 else "--") + name] = arg
    return found


@functools.cache
def task_options(name: str) -> dict[str, Argument]:
    """A task's options by every flag they go by (``--allow-dirty``, ``-a``, ...)."""
    found = dict(TASK_HELP)
    for arg in fresh_arguments(task_path(name)):
        for flag in arg.names:
            found[("-" if len(flag) == 1 else "--") + flag] = arg
    return found


#: ``fab <task> --help`` (or ``-h``) works for every task.
TASK_HELP = dict.fromkeys(("--help", "-h"), Argument(names=("help", "h"), kind=bool))


def task_path(name: str) -> str:
    """A task's full dotted name (the default task of a collection for its collection's name)."""
    ns = root()
    if name in ns.task_names:
        return name
    for full, aliases in ns.task_names.items():
        if name in aliases:
            return full
    return name


def takes_value(arg: Argument) -> bool:
    return arg.kind is not bool and not arg.optional


def check_command(words: list[str]) -> list[str]:
    """Problems with one ``fab`` command line (its words after ``fab``)."""
    ns = root()
    tasks = set(ns.task_names) | {a for aliases in ns.task_names.values() for a in aliases}
    problems: list[str] = []
    options: dict[str, Argument] | None = core_options()  # None: after an unknown task
    current = None
    positionals = 0  # how many positional words the current task still takes
    words = list(words)
    if any(w in ("-c", "--collection") or w.startswith("--collection=") for w in words):
        return []  # another collection: nothing here to check against
    while words:
        word = words.pop(0)
        if word in ("--", "...") or word.startswith("..."):
            break  # the rest goes to the task, or is left out on purpose
        if re.match(r"^\d*(>|>>|<)(&\d+)?$", word):
            words[:1] = []  # a shell redirection and its target: > file, 2> file
            continue
        if re.match(r"^\d*(>|>>)\S", word):
            continue  # >/dev/null, 2>&1
        if word.startswith("-") and len(word) > 1:
            if options is None:
                continue  # options of a task already reported as unknown
            flag, eq, _ = word.partition("=")
            known = options.get(flag) or core_options().get(flag)  # -H works after a task too
            if known is None and not flag.startswith("--") and len(flag) > 2:
                short = flag[:2]  # -Hhost, -n5
                known = options.get(short) or core_options().get(short)
                eq = "=" if known is not None and takes_value(known) else eq
            if known is None:
                where = f"task {current!r}" if current else "fab"
                problems.append(f"{where} has no option {flag}")
                continue
            if current is None and known.name in ("help", "list") and words:
                if not words[0].startswith("-"):
                    target = words.pop(0)
                    if known.name == "help" and target not in tasks:
                        problems.append(f"fab --help {target}: no task {target!r}")
                continue
            if takes_value(known) and not eq and words:
                words.pop(0)
            continue
        if positionals:  # a positional argument of the task (fab exec "COMMAND")
            positionals -= 1
            continue
        if word in ENVIRONMENT_WORDS and word not in tasks:
            current, options = word, dict(TASK_HELP)
            continue
        if word not in tasks:
            problems.append(f"no task {word!r}")
            current, options = None, None
            continue
        current, options = word, task_options(word)
        positionals = sum(1 for arg in fresh_arguments(task_path(word)) if arg.positional)
    return problems


def fab_commands(text: str) -> list[tuple[int, str]]:
    """(line number, command) for every ``fab`` command in code blocks and inline code."""
    found: list[tuple[int, str]] = []
    for info, start, lines in code_blocks(text):
        if OWN_FABFILE in info.split():
            continue
        for offset, line in enumerate(lines):
            found += [(start + offset, part) for part in fab_invocations(line)]
    for number, line in prose(text):
        for span in code_spans(line):
            found += [(number, part) for part in fab_invocations(span)]
    return found


def code_spans(line: str) -> list[str]:
    """The contents of a line's inline code spans (```` `x` ```` or ```` ``x `y` z`` ````)."""
    spans = re.finditer(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", line)
    return [match.group(2).strip() for match in spans]


def fab_invocations(line: str) -> list[str]:
    """The ``fab ...`` commands on a shell line: after ``$``, ``VAR=value``, ``&&``, ``|``."""
    line = re.sub(r"^\s*\$\s+", "", line)
    commands = []
    for part in re.split(r"&&|\|\||;|\|", line):
        words = part.strip()
        match = re.match(r"^(?:[A-Za-z_][A-Za-z0-9_]*=\S*\s+)*(?:\S*/)?fab(?:\s+(.*))?$", words)
        if match:
            commands.append("fab " + (match.group(1) or ""))
    return commands


def split_command(command: str) -> list[str]:
    """The words after ``fab``, without a trailing ``# comment``."""
    try:
        words = shlex.split(command, comments=True)
    except ValueError:
        words = command.split()
    return words[1:]


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_fab_commands_name_existing_tasks(page: Path) -> None:
    problems = []
    for number, command in fab_commands(page.read_text(encoding="utf-8")):
        for problem in check_command(split_command(command)):
            problems.append(f"{rel(page)}:{number}: `{command.strip()}`: {problem}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("fab staging deploy --skip-tests", []),
        ("fab -H deploy@web1,web2 setup deploy", []),
        ("fab -Hweb1 -i ~/.ssh/id status", []),
        ("fab <env> logs -n 100 --follow", []),
        ("fab production rollback --release=20260101T000000.000Z", []),
        ("fab releases -n 5", []),
        ("fab --help deploy", []),
        ("fab --list", []),
        ("fab run.reload setup.service test.smoke -r 1", []),
        ("fab staging deplyo", ["no task 'deplyo'"]),
        ("fab monitor.stauts", ["no task 'monitor.stauts'"]),
        ("fab deploy --no-such-flag", ["task 'deploy' has no option --no-such-flag"]),
        ("fab --help nothing", ["fab --help nothing: no task 'nothing'"]),
        ("fab production health >/dev/null 2>&1", []),
        ("fab production health > out.txt", []),
        ("fab staging ...", []),
        ("fab deploy -h", []),
        ("fab nosuch --whatever deploy", ["no task 'nosuch'"]),
        ("fab staging -H web1 deploy", []),
        ("fab staging deploy -H web1,web2 --fleet", []),
        ("fab production exec --once 'python manage.py migrate' status", []),
        ("fab exec 'ls' lsx", ["no task 'lsx'"]),  # one positional, then tasks again
    ],
)
def test_command_checker(command: str, expected: list[str]) -> None:
    assert check_command(split_command(command)) == expected


def test_commands_are_found_in_blocks_spans_and_pipelines() -> None:
    text = (
        "Run `fab staging deploy` now.\n\n```\n$ fab status\ncd x && fab health | tail\n"
        "FABDEPLOY_ENVIRONMENT=staging .venv/bin/fab logs  # comment\nfabdeploy: no\n```\n\n"
        "```python own-fabfile\nfab ship\n```\n"
    )
    assert [c for _, c in fab_commands(text)] == [
        "fab status",
        "fab health",
        "fab logs  # comment",
        "fab staging deploy",
    ]


# --- 3. relative links ---------------------------------------------------------------------


def links(text: str) -> list[tuple[int, str]]:
    found = []
    for number, line in prose(text):
        line = re.sub(r"`[^`]*`", "", line)
        for target in re.findall(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", line):
            found.append((number, target))
    return found


def broken_links(page: Path) -> list[str]:
    problems = []
    for number, target in links(page.read_text(encoding="utf-8")):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):
            continue  # http:, https:, mailto:
        path_part, _, anchor = target.partition("#")
        path = (page.parent / path_part).resolve() if path_part else page
        where = f"{rel(page)}:{number}: ({target})"
        if not path.exists():
            problems.append(f"{where}: {path_part} does not exist")
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            problems.append(f"{where}: no heading #{anchor} in {path.name}")
    return problems


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_relative_links_resolve(page: Path) -> None:
    problems = broken_links(page)
    assert not problems, "\n".join(problems)


def test_link_checker_catches_missing_files_and_anchors(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("# Title\n\n## Some `code` heading!\n")
    page = tmp_path / "b.md"
    page.write_text(
        "[ok](a.md) [ok](a.md#some-code-heading) [ok](#here) [web](https://x.invalid/y)\n"
        "[bad](missing.md) [bad](a.md#nope)\n\n## Here\n"
    )
    problems = broken_links(page)
    assert len(problems) == 2
    assert "missing.md does not exist" in problems[0]
    assert "no heading #nope" in problems[1]


def test_index_links_every_page() -> None:
    index = DOCS / "README.md"
    linked = {target.partition("#")[0] for _, target in links(index.read_text(encoding="utf-8"))}
    pages = {p.name for p in DOCS.glob("*.md")} - {"README.md"}
    assert not pages - linked, f"docs/README.md does not link {sorted(pages - linked)}"


# --- 4. every task has a docstring and help for every option -------------------------------


@functools.cache
def fresh_tasks() -> ModuleType:
    """fabdeploy's task package loaded again under another name.

    invoke's `Task.get_arguments` pops each help text out of `Task.help` once it has used it,
    so the tasks other tests (or a parser) already looked at have lost theirs. A fresh copy
    still has every help text as written in the code.
    """
    here = REPO / "tasks"
    spec = importlib.util.spec_from_file_location(
        "fabdeploy_doccheck", here / "__init__.py", submodule_search_locations=[str(here)]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["fabdeploy_doccheck"] = module
    spec.loader.exec_module(module)
    return module


@functools.cache
def fresh_root() -> Collection:
    return fresh_tasks().namespace(project_dir=REPO)


_ARGUMENTS: dict[int, list[Argument]] = {}


def fresh_arguments(name: str) -> list[Argument]:
    """The options of task ``name`` (fresh copy), each with its help (computed once per task,
    since a task reachable under two names is one object)."""
    task: Task = fresh_root()[name]
    if id(task) not in _ARGUMENTS:
        _ARGUMENTS[id(task)] = task.get_arguments()
    return _ARGUMENTS[id(task)]


def all_task_names() -> list[str]:
    return sorted(root().task_names)


#: Tasks known to lack a docstring or option help today: (name, reason). Each is an xfail
#: that must fail (strict), so fixing the task forces removing it from here.
LACKING_HELP: dict[str, str] = {}


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(
            name,
            marks=[pytest.mark.xfail(strict=True, reason=LACKING_HELP[name])]
            if name in LACKING_HELP
            else [],
        )
        for name in all_task_names()
    ],
)
def test_task_has_docstring_and_help_for_every_option(name: str) -> None:
    task = fresh_root()[name]
    assert (task.__doc__ or "").strip(), f"task {name}: no docstring (fab --list shows nothing)"
    params = [p for p in task.argspec(task.body).parameters]
    args = fresh_arguments(name)
    assert sorted(a.attr_name or a.name for a in args) == sorted(params)
    lacking = [a.name for a in args if not (a.help or "").strip()]
    assert not lacking, f"task {name}: options without help= text: {lacking}"


def test_help_check_sees_a_task_without_help() -> None:
    from invoke import task

    @task(help={"known": "documented"})
    def sample(c, known=False, unknown=""):
        """A task."""

    args = sample.get_arguments()
    assert [a.name for a in args if not a.help] == ["unknown"]
