# SPDX-License-Identifier: MIT
"""Developer tasks: ``nox -s tests``, ``lint``, ``typing``, ``docs``."""

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
    session.install(".[prometheus]")  # tests/test_prometheus.py needs the extra
    session.run("coverage", "run", "-m", "pytest", *session.posargs)
    session.run("coverage", "report", "--fail-under=90")


@nox.session
def lint(session: nox.Session) -> None:
    """ruff, plus flake8-async for the checkpoint rules ruff lacks (ASYNC910/911)."""
    install_group(session, "lint")
    session.run("ruff", "check", "trio_workq", "tests", "noxfile.py", "docs")
    session.run("ruff", "format", "--check", "trio_workq", "tests", "noxfile.py", "docs")
    sources = sorted(str(path) for path in Path("trio_workq").rglob("*.py"))
    session.run("flake8-async", "--enable", "ASYNC910,ASYNC911", *sources)


@nox.session
def typing(session: nox.Session) -> None:
    """mypy --strict, pyright strict, and pyright --verifytypes on the public API."""
    install_group(session, "typing")
    session.install(".[prometheus]")  # trio_workq.prometheus and its tests import it
    session.run("mypy")
    session.run("pyright")
    session.run("pyright", "--verifytypes", "trio_workq", "--ignoreexternal")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the docs (html and doctest), warnings as errors."""
    install_group(session, "docs")
    session.install(".")
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
