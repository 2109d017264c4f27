# SPDX-License-Identifier: MIT
"""Sphinx configuration for the trio_workq documentation.

Build with ``nox -s docs``, or by hand::

    sphinx-build -W --keep-going -n -b html docs docs/_build/html
    sphinx-build -W --keep-going -n -b doctest docs docs/_build/doctest

The doctest of ``backends.md`` runs its example on PostgreSQL too: the server
at ``TRIO_WORKQ_TEST_PG_URL`` (default ``postgresql://postgres@127.0.0.1:5432/test``,
as for the tests), in a schema of its own, dropped afterwards. Without a reachable
server that doctest fails.

Links to the Python, Trio, attrs and outcome documentation need their
intersphinx inventories, which are downloaded at build time. The default
build works offline; set ``TRIO_WORKQ_DOCS_INTERSPHINX=1`` to enable the links.
"""

from __future__ import annotations

import os

from sphinx.pycode import ModuleAnalyzer

import trio_workq

project = "trio_workq"
author = "The trio_workq developers"
copyright = "The trio_workq developers"
release = trio_workq.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
    "sphinx.ext.doctest",
    "sphinxcontrib_trio",
]

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

# `name` in Markdown and in docstrings is a cross-reference.
default_role = "py:obj"
nitpicky = True

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 2

# Docstrings use the Google style.
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True

# The type variables of the handles (TaskHandle[T_co], MemoryTaskHandle[T],
# DurableTaskHandle[T]), in their methods' signatures.
nitpick_ignore = [
    ("py:class", "trio_workq._runtime.api.T_co"),
    ("py:class", "trio_workq._memory.handle.T"),
    ("py:class", "trio_workq._durable.handle.T"),
]

if os.environ.get("TRIO_WORKQ_DOCS_INTERSPHINX"):
    intersphinx_mapping = {
        "python": ("https://docs.python.org/3", None),
        "trio": ("https://trio.readthedocs.io/en/stable/", None),
        "attrs": ("https://www.attrs.org/en/stable/", None),
        "outcome": ("https://outcome.readthedocs.io/en/latest/", None),
    }
else:
    # Offline: no inventories, so references into other projects cannot resolve.
    # Let them render as plain names rather than fail the nitpicky build.
    nitpick_ignore_regex = [
        (
            r"py:.*",
            r"(trio|outcome|attrs|datetime|time|functools|contextlib|collections\.abc|opentelemetry)(\..+)?",
        ),
    ]

# The examples in docstrings use the package's names unqualified. The examples in the
# pages import what they use, so that they can be copied as they are.
doctest_global_setup = "from trio_workq import *"


def _document_type_alias(app, what, name, obj, options, lines):
    """Give the `Backoff` type alias the ``#:`` comment it has in `trio_workq._core.retry`.

    autodoc looks for that comment in `trio_workq` itself, where the alias is only imported.
    """
    if name == "trio_workq.Backoff" and not any(lines):
        analyzer = ModuleAnalyzer.for_module("trio_workq._core.retry")
        analyzer.analyze()
        lines[:] = [*analyzer.attr_docs["", "Backoff"], ""]


def setup(app):
    app.connect("autodoc-process-docstring", _document_type_alias)


html_theme = "furo"
html_title = f"trio_workq {release}"
