# SPDX-License-Identifier: MIT
"""Developer tasks: ``nox -s tests``, ``lint``, ``typing``, ``docs`` (and ``bench``, ``chaos``)."""

from __future__ import annotations

from pathlib import Path

import nox

nox.needs_version = ">=2024.3.2"
nox.options.sessions = ["tests", "lint", "typing", "docs"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_external_run = True

PYPROJECT = nox.project.load_toml("pyproject.toml")


def install_group(session: nox.Session, *groups: str) -> None:
    for group in groups:
        session.install(*nox.project.dependency_groups(PYPROJECT, group))


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite under coverage."""
    install_group(session, "tests")
    session.install(".[prometheus,web,postgres,otel]")  # the tests of every extra
    session.run("coverage", "run", "-m", "pytest", *session.posargs)
    session.run("coverage", "report", "--fail-under=90")


@nox.session
def lint(session: nox.Session) -> None:
    """ruff, plus flake8-async for the checkpoint rules ruff lacks (ASYNC910/911)."""
    install_group(session, "lint")
    paths = ("trio_workq", "tests", "benchmarks", "noxfile.py", "docs")
    session.run("ruff", "check", *paths)
    session.run("ruff", "format", "--check", *paths)
    sources = sorted(str(path) for path in Path("trio_workq").rglob("*.py"))
    session.run("flake8-async", "--enable", "ASYNC910,ASYNC911", *sources)


@nox.session
def typing(session: nox.Session) -> None:
    """mypy --strict, pyright strict, and pyright --verifytypes on the public API."""
    install_group(session, "typing", "bench", "bench-postgres")  # benchmarks/ is checked too
    # trio_workq.prometheus, .web, .otel, ._postgres and their tests
    session.install(".[prometheus,web,postgres,otel]")
    session.run("mypy")
    session.run("pyright")
    session.run("pyright", "--verifytypes", "trio_workq", "--ignoreexternal")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the docs (html and doctest), warnings as errors."""
    install_group(session, "docs")
    # autodoc imports the extras' modules; docs/backends.md runs its example on PostgreSQL
    # (the server at TRIO_WORKQ_TEST_PG_URL, as for the tests: the build fails without it).
    session.install(".[prometheus,web,otel,postgres]")
    for builder in ("html", "doctest"):
        session.run(
            "sphinx-build",
            "-W",
            "--keep-going",
            "-n",
            "-b",
            builder,
            "docs",
            f"docs/_build/{builder}",
        )


@nox.session
def bench(session: nox.Session) -> None:
    """The benchmark suite (docs/benchmarks.md); ``nox -s bench -- --quick`` is CI's smoke run.

    Arguments after ``--`` go to ``python -m benchmarks`` (``--reps``, ``--only``, ``--json``).
    """
    install_group(session, "bench")
    session.install(".[prometheus,web]")  # comparison 7 and the REST API part of 8
    session.run("python", "-m", "benchmarks", *session.posargs)


@nox.session
def bench_postgres(session: nox.Session) -> None:
    """The durable queue on PostgreSQL end to end, next to procrastinate (a server is needed).

    Arguments after ``--`` go to ``python -m benchmarks.bench_durable_postgres`` (``--quick``,
    ``--reps``, ``--url``, ``--json``).
    """
    install_group(session, "bench-postgres")
    session.install(".[postgres]")
    session.run("python", "-m", "benchmarks.bench_durable_postgres", *session.posargs)


@nox.session
def chaos(session: nox.Session) -> None:
    """Worker processes under SIGKILLs, drains, a server restart and poison tasks.

    On SQLite and on a throwaway PostgreSQL server (its binaries are needed, not a
    running server); docs/persistence.md. ``nox -s chaos -- --quick`` is CI's short
    run; arguments after ``--`` go to ``python -m benchmarks.chaos`` (``--no-poison``,
    ``--backends``, ``--tasks``, ``--seed``).
    """
    session.install(".[postgres]")
    session.run("python", "-m", "benchmarks.chaos", *session.posargs)
