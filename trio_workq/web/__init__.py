# SPDX-License-Identifier: MIT
"""A web dashboard and REST API for a `~trio_workq.TaskQueue`, in memory or durable.

Needs the ``web`` extra (``pip install 'trio_workq[web]'``: Starlette and
Hypercorn). `create_app` returns an ASGI app to mount in your own; and
`serve_dashboard` serves it with Hypercorn's Trio worker::

    async with trio.open_nursery() as nursery:
        async with trio_workq.open_work_queue(nursery) as queue:
            url = await nursery.start(trio_workq.web.serve_dashboard, queue)
            print(f"dashboard at {url}")
            ...
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.applications import Starlette

from .._runtime.api import TaskQueue
from ._app import LOCAL_HOST_NAMES as LOCAL_HOST_NAMES
from ._app import build_app, check_allowed_hosts, check_token
from ._server import check_dashboard_options as check_dashboard_options
from ._server import serve_dashboard as serve_dashboard
from ._source import QueueSource, check_queue

__all__ = ["LOCAL_HOST_NAMES", "check_dashboard_options", "create_app", "serve_dashboard"]


def create_app(
    queue: TaskQueue, *, token: str | None = None, allowed_hosts: Iterable[str] | None = None
) -> Starlette:
    """The dashboard and REST API of *queue*, as an ASGI app. Not a checkpoint.

    Serve it from the Trio run that owns the queue (for instance with
    Hypercorn's Trio worker, or mounted in your own Starlette app served
    that way): its handlers call the queue directly.

    For an in-memory queue, the app counts completed and failed tasks per
    second for its chart with a small event listener on the queue, shared by
    every app on that queue. For a durable queue, it shows every task of the
    store, whichever process runs it, and its chart counts the tasks the
    whole store finished between two polls. ``GET /metrics`` instruments the
    queue for Prometheus on its first request (with its own registry), so
    metrics count from then on.

    Args:
        queue: The queue to show and act on: a `~trio_workq.WorkQueue` or a
            `~trio_workq.DurableWorkQueue`.
        token: If given, every API request must carry
            ``Authorization: Bearer <token>``; printable ASCII, no spaces.
            The page and its script and stylesheet stay public (they hold
            no data); the page asks for the token.
        allowed_hosts: If given, the app answers only requests whose Host
            header names one of these hosts (any case, without the port);
            others get a 400. An app without a token served on a loopback
            address needs this (`LOCAL_HOST_NAMES`, say): without it, a web
            page whose domain is made to resolve to 127.0.0.1 (DNS
            rebinding) can read and act on the queue as a same-origin page.

    Returns:
        A Starlette app: ``/`` is the dashboard, ``/api/...`` the REST API,
        plus ``/metrics`` and ``/healthz``.

    Raises:
        TypeError: If *queue* is not a `~trio_workq.TaskQueue`, *token* is
            not a string, or *allowed_hosts* is not a collection of strings.
        ValueError: For an empty token, or one with spaces or non-ASCII
            characters; for an empty *allowed_hosts* or one holding
            something that is not a host name.
    """
    check_queue(queue)
    # Checked before the source starts listening to the queue.
    token = check_token(token)
    names = check_allowed_hosts(allowed_hosts)
    return build_app(QueueSource(queue), token=token, allowed_hosts=names)
