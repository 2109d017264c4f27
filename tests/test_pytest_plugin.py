# SPDX-License-Identifier: MIT
"""The pytest plugin ``trio_workq.testing.pytest_plugin``, run in pytest subprocesses.

Each test writes a small project (tests, an ini file, maybe a conftest) with
pytester and runs pytest on it in a subprocess, loading the plugin with
``-p`` as a user without entry points would (the last test checks the entry
point itself). The subprocesses use this checkout's trio_workq (they inherit
``PYTHONPATH``) and pytest-trio in ``trio_mode``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from _pg import PG_URL, require_postgres

import trio_workq.testing.pytest_plugin as plugin

pytest_plugins = ["pytester"]

PLUGIN = "trio_workq.testing.pytest_plugin"
REPO = Path(__file__).resolve().parent.parent

#: A test module using the fixtures: each test records what it ran on.
USES_QUEUE = """
import trio
import trio_workq
from trio_workq.testing import assert_submitted, drain


@trio_workq.task
async def double(x):
    await trio.sleep(0)
    return 2 * x


async def test_double(work_queue, workq_backend):
    handle = await work_queue.submit(double, 21)
    assert await handle.result() == 42
    await assert_submitted(work_queue, double, args=(21,), status="completed")
    kind = type(work_queue).__name__
    print(f"RAN {workq_backend} {kind}")
"""


def pytest11_entry_points(pyproject: Path) -> dict[str, str]:
    """The ``[project.entry-points.pytest11]`` table (read by hand: no tomllib on 3.10)."""
    entries: dict[str, str] = {}
    lines = iter(pyproject.read_text().splitlines())
    for line in lines:
        if line.strip() == "[project.entry-points.pytest11]":
            break
    for line in lines:
        if line.startswith("["):
            break
        if "=" in line and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            entries[key.strip().strip('"')] = value.strip().strip('"')
    return entries


def write_ini(pytester: pytest.Pytester, *lines: str) -> None:
    """The project's pytest.ini: pytest-trio's trio_mode, and *lines*."""
    pytester.makefile(".ini", pytest="\n".join(["[pytest]", "trio_mode = true", *lines, ""]))


def run(
    pytester: pytest.Pytester, *args: str, plugin: bool = True, subprocess: bool = True
) -> pytest.RunResult:
    """pytest in a subprocess, verbose and with output shown; with the plugin by ``-p``.

    In this process instead (faster) only where pytest stops before collecting:
    the inner tests would register their tasks in this process's registry.
    """
    if not (pytester.path / "pytest.ini").exists():
        write_ini(pytester)
    options = ["-p", PLUGIN] if plugin else []
    runpytest = pytester.runpytest_subprocess if subprocess else pytester.runpytest_inprocess
    return runpytest(*options, "-v", "-s", "-p", "no:cacheprovider", *args)


def test_a_test_using_work_queue_runs_once_per_backend(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_queue=USES_QUEUE)
    result = run(pytester)
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(
        [
            "*test_double?memory? RAN memory WorkQueue",
            "*test_double?memorystore? RAN memorystore DurableWorkQueue",
            "*test_double?sqlite? RAN sqlite DurableWorkQueue",
        ]
    )


def test_the_backends_are_chosen_by_option_or_ini(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_queue=USES_QUEUE)
    result = run(pytester, "--workq-backends", "sqlite, memory,sqlite")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*test_double?sqlite? RAN*", "*test_double?memory? RAN*"])

    write_ini(pytester, "workq_backends = memorystore")
    result = run(pytester)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*test_double?memorystore? RAN*"])
    # The command line wins over the ini file.
    result = run(pytester, "--workq-backends=memory")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*test_double?memory? RAN*"])


def test_the_plugin_is_inert_when_no_test_uses_it(pytester: pytest.Pytester) -> None:
    """Tests that take none of its fixtures run as they would without it."""
    pytester.makepyfile(
        test_plain="""
        import trio

        def test_sync():
            pass

        async def test_async():
            await trio.sleep(0)

        async def test_clock(autojump_clock):
            await trio.sleep(3600)
        """
    )
    result = run(pytester)
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(
        ["*test_plain.py::test_sync PASSED*", "*test_plain.py::test_async PASSED*"]
    )
    result.stdout.no_fnmatch_line("*[[]memory*")
    # And the same without the plugin: nothing differs but the added options.
    run(pytester, plugin=False).assert_outcomes(passed=3)


def test_loading_the_plugin_imports_no_optional_dependency() -> None:
    code = (
        f"import sys, {PLUGIN}; "
        "extras = ('psycopg', 'prometheus_client', 'starlette', 'hypercorn', 'opentelemetry'); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in extras))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("args", "ini", "message"),
    [
        (
            ["--workq-backends=memory,redis"],
            "",
            "*--workq-backends: unknown trio_workq backend(s) 'redis'; "
            "choose from memory, memorystore, sqlite, postgres*",
        ),
        (
            [],
            "workq_backends = sqlit",
            "*the workq_backends ini option: unknown trio_workq backend(s) 'sqlit'*",
        ),
        (["--workq-backends= ,"], "", "*--workq-backends names no backend*"),
        (
            ["--workq-backends=postgres"],
            "",
            "*the postgres trio_workq backend needs a database: pass --workq-postgres-url "
            "or set $TRIO_WORKQ_POSTGRES_URL*",
        ),
        (
            ["--workq-backends=postgres", "--workq-postgres-url=sqlite:///x.db"],
            "",
            "*--workq-postgres-url must be a postgresql:// URL*",
        ),
        (
            ["--workq-backends=postgres", f"--workq-postgres-url={PG_URL}?schema=mine"],
            "",
            "*--workq-postgres-url must not name a schema*",
        ),
    ],
)
def test_bad_options_are_usage_errors(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    ini: str,
    message: str,
) -> None:
    monkeypatch.delenv(plugin.POSTGRES_URL_VARIABLE, raising=False)
    write_ini(pytester, ini)
    pytester.makepyfile(test_queue=USES_QUEUE)
    result = run(pytester, *args, subprocess=False)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_autojump_clock_and_the_marker_narrow_the_backends(pytester: pytest.Pytester) -> None:
    """A virtual clock rules out the stores that work in threads; the marker narrows further."""
    pytester.makepyfile(
        test_narrow="""
        import pytest
        import trio
        import trio_workq
        from trio_workq.testing import drain

        @trio_workq.task
        async def ping():
            await trio.sleep(0)

        async def test_hours(work_queue, workq_backend, autojump_clock):
            await work_queue.schedule(ping, delay=3600)
            assert (await drain(work_queue, with_scheduled=True)).completed == 1
            assert trio.current_time() >= 3600

        @pytest.mark.workq_backends("sqlite", "memory")
        def test_marked(workq_backend):
            pass

        @pytest.mark.parametrize("workq_backend", ["memorystore"], indirect=True)
        def test_chosen(workq_backend):
            assert workq_backend == "memorystore"

        @pytest.mark.workq_backends("sqlite")
        async def test_none_left(work_queue, autojump_clock):
            pass
        """
    )
    result = run(pytester, "-rs")
    result.stdout.fnmatch_lines(
        [
            "*test_hours?memory? PASSED*",
            "*test_hours?memorystore? PASSED*",
            "*test_marked?memory? PASSED*",
            "*test_marked?sqlite? PASSED*",
            "*test_chosen?memorystore? PASSED*",
            "*test_none_left?no-backend? SKIPPED*",
            "*",
            "SKIPPED [[]1[]] test_narrow.py:*: no trio_workq backend fits this test "
            "(selected: memory, memorystore, sqlite; the workq_backends marker allows sqlite; "
            "autojump_clock allows memory, memorystore)",
        ]
    )
    result.assert_outcomes(passed=5, skipped=1)
    result.stdout.no_fnmatch_line("*test_hours?sqlite*")


def test_an_unknown_backend_in_the_marker_is_a_collection_error(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_marker="""
        import pytest

        @pytest.mark.workq_backends("memory", "mongo")
        def test_it(workq_backend):
            pass
        """
    )
    result = run(pytester)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(
        ["*the workq_backends marker: unknown trio_workq backend(s) 'mongo'*"]
    )


def test_options_factory_and_a_users_own_fixtures(pytester: pytest.Pytester) -> None:
    """``workq_options`` can be overridden; the factory shares the store; user fixtures win."""
    pytester.makeconftest(
        """
        import pytest

        @pytest.fixture
        def workq_options(workq_backend):
            return {"workers": 3}
        """
    )
    pytester.makepyfile(
        test_options="""
        import trio
        import trio_workq
        from trio_workq.testing import drain

        @trio_workq.task
        async def noop():
            await trio.sleep(0)

        async def test_options(work_queue):
            assert (await work_queue.statistics()).workers == 3

        async def test_factory(work_queue_factory, workq_backend):
            if workq_backend == "memory":
                return  # an in-memory queue is its own: nothing to share
            async with work_queue_factory(workers=0) as submitter:
                handle = await submitter.submit(noop)
                async with work_queue_factory(workers=1) as worker:
                    await drain(worker)
                    assert await worker.get_info(handle.id) == await submitter.get_info(
                        handle.id
                    )
        """,
        test_own="""
        import pytest

        @pytest.fixture
        def work_queue():
            return "mine"

        def test_own(work_queue):
            assert work_queue == "mine"
        """,
    )
    result = run(pytester, "--workq-backends=memory,memorystore")
    result.assert_outcomes(passed=5)
    result.stdout.fnmatch_lines(["*test_own.py::test_own PASSED*"])


def test_postgres_gives_each_test_a_schema_dropped_after(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_postgres()
    pytester.makepyfile(
        test_pg="""
        async def test_schema(work_queue):
            print("SCHEMA", work_queue.store.schema)
            assert (await work_queue.statistics()).queued == 0
        """
    )
    monkeypatch.setenv(plugin.POSTGRES_URL_VARIABLE, PG_URL)  # the default URL
    result = run(pytester, "--workq-backends=postgres")
    result.assert_outcomes(passed=1)
    (line,) = [line for line in result.outlines if "SCHEMA" in line]
    schema = line.split("SCHEMA ", 1)[1].split()[0]
    assert schema.startswith("workq_test_")
    with psycopg.connect(PG_URL) as conn:
        found = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchall()
    assert found == []


def test_the_entry_point_loads_the_plugin(
    pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pyproject.toml declares it; pytest loads a distribution's ``pytest11`` entry point by itself.

    The entry point is copied into a throwaway distribution on the
    subprocess's path (this checkout may not be the installed one). Named as
    the module, ``-p`` with the module's name finds the same registration.
    """
    assert pytest11_entry_points(REPO / "pyproject.toml") == {PLUGIN: PLUGIN}
    site = tmp_path / "site"
    dist = site / "trio_workq_entry_point_check-0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: trio_workq_entry_point_check\nVersion: 0\n"
    )
    (dist / "entry_points.txt").write_text(f"[pytest11]\n{PLUGIN} = {PLUGIN}\n")
    path = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(site), path])))
    pytester.makepyfile(test_queue=USES_QUEUE)
    result = run(pytester, "--workq-backends=memory", plugin=False)
    result.assert_outcomes(passed=1)
    # -p with the module's name: the entry point's registration, not a second one.
    run(pytester, "--workq-backends=memory").assert_outcomes(passed=1)


def docs_example() -> str:
    """The test module shown in docs/testing.md (the code block after the comment naming this)."""
    text = (REPO / "docs" / "testing.md").read_text()
    _, marker, rest = text.partition("% The code below is run by tests/test_pytest_plugin.py")
    assert marker, "docs/testing.md lost its tested example"
    _, fence, rest = rest.partition("```python\n")
    assert fence
    code, fence, _ = rest.partition("```\n")
    assert fence
    return code


def test_the_docs_example(pytester: pytest.Pytester) -> None:
    """The example of docs/testing.md runs as the page says: three backends, then two."""
    pytester.makepyfile(test_signup=docs_example())
    result = run(pytester)
    result.assert_outcomes(passed=5)
    result.stdout.fnmatch_lines(
        [
            "*test_sign_up_sends_a_welcome_email?memory? PASSED*",
            "*test_sign_up_sends_a_welcome_email?memorystore? PASSED*",
            "*test_sign_up_sends_a_welcome_email?sqlite? PASSED*",
            "*test_two_hours_later?memory? PASSED*",
            "*test_two_hours_later?memorystore? PASSED*",
        ]
    )
