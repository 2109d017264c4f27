# SPDX-License-Identifier: MIT
"""The workload of ``trio-workq demo``: pretend jobs and their scripts.

Pretend jobs of a small web shop arrive at random: e-mails, image resizes,
card payments, inventory syncs, reports, archive exports and reminders.
Each submitted task carries a script (`Job`, `Planned`) drawn from a seeded
random generator: how long it runs, how many of its attempts fail and how,
whether it is delayed, and whether an "operator" cancels it. Which final
status every task reaches is therefore fixed by the seed and the task count,
whatever the timing (only a stop before the end changes it). `demo_run`
submits them and shows what happens.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

import attrs
import trio

from .._core.errors import TaskTimeout
from .._core.retry import RetryPolicy, exponential
from .._core.status import TaskStatus
from .._runtime.events import current_task

# ------------------------------------------------------------------ the workload


@attrs.frozen(repr=False)
class Job:
    """One pretend job and its script.

    Attributes:
        kind: The task's name (``send_email``, ``charge_card``...).
        subject: What it works on (an address, a file, an order).
        duration: Seconds a successful attempt takes (already time-scaled).
        failures: How many attempts fail before one succeeds.
        error: The exception type a failing attempt raises.
        message: Its message.
        hangs: Failing attempts hang until the task's timeout stops them,
            instead of raising *error*.
    """

    kind: str
    subject: str
    duration: float
    failures: int = 0
    error: type[Exception] = ConnectionError
    message: str = ""
    hangs: bool = False

    def __repr__(self) -> str:
        # What the dashboard shows as the task's argument.
        return f"{self.kind}({self.subject!r})"


@attrs.frozen
class Planned:
    """How one job is submitted, and what the operator does to it.

    Attributes:
        job: The job to run.
        priority: Its priority (higher runs first).
        timeout: Seconds one attempt may run, or ``None``.
        retry: Its retry policy, or ``None``.
        delay: Seconds until a delayed job is due; ``None`` submits it now.
        cancel_after: Seconds after submission at which the operator cancels
            it (always before it could finish), or ``None``.
    """

    job: Job
    priority: int = 0
    timeout: float | None = None
    retry: RetryPolicy | None = None
    delay: float | None = None
    cancel_after: float | None = None

    @property
    def expected(self) -> TaskStatus:
        """The final status this script leads to when the demo runs to the end."""
        if self.cancel_after is not None:
            return TaskStatus.CANCELLED
        if self.job.failures == 0:
            return TaskStatus.COMPLETED
        retry = self.retry
        error: type[BaseException] = TaskTimeout if self.job.hangs else self.job.error
        if retry is None or not issubclass(error, retry.retry_on):
            return TaskStatus.FAILED
        if self.job.failures >= retry.max_attempts:
            return TaskStatus.FAILED
        return TaskStatus.COMPLETED


class Workload:
    """An endless, reproducible stream of jobs and the pauses between them.

    Args:
        seed: Seeds the random generator: the same seed gives the same jobs.
        rate: Average arrivals per second (before *speed*).
        speed: Time scale: 2 makes every duration, delay and pause half as long.
    """

    #: (kind, weight): how often each kind of job arrives.
    KINDS = (
        ("send_email", 32),
        ("resize_image", 25),
        ("send_reminder", 12),
        ("charge_card", 10),
        ("sync_inventory", 10),
        ("generate_report", 6),
        ("export_archive", 5),
    )

    #: Chance that an arrival is a burst (a newsletter going out), and its size range.
    BURST_CHANCE = 0.02
    BURST_SIZE = (10, 30)

    def __init__(self, seed: int, *, rate: float = 10.0, speed: float = 1.0) -> None:
        self._rng = random.Random(seed)
        self._rate = rate
        self._speed = speed
        self._count = 0
        self._burst_left = 0
        self._kinds = [name for name, _ in self.KINDS]
        self._weights = [weight for _, weight in self.KINDS]
        self._makers: dict[str, Callable[[], Planned]] = {
            "send_email": self._send_email,
            "resize_image": self._resize_image,
            "send_reminder": self._send_reminder,
            "charge_card": self._charge_card,
            "sync_inventory": self._sync_inventory,
            "generate_report": self._generate_report,
            "export_archive": self._export_archive,
        }
        backoff = exponential(initial=0.2 / speed, max_delay=2.0 / speed)
        self._retry = {
            "send_email": RetryPolicy(max_attempts=4, backoff=backoff, retry_on=ConnectionError),
            "resize_image": RetryPolicy(max_attempts=3, backoff=backoff, retry_on=OSError),
            "sync_inventory": RetryPolicy(
                max_attempts=4, backoff=backoff, retry_on=ConnectionError
            ),
            "generate_report": RetryPolicy(max_attempts=2, backoff=backoff, retry_on=OSError),
        }

    def __iter__(self) -> Iterator[tuple[float, Planned]]:
        return self

    def __next__(self) -> tuple[float, Planned]:
        """The pause before the next arrival (seconds, scaled) and the job that arrives."""
        rng = self._rng
        self._count += 1
        if self._burst_left:
            self._burst_left -= 1
            return 0.0, self._send_email()
        pause = rng.expovariate(self._rate) / self._speed
        if rng.random() < self.BURST_CHANCE:
            self._burst_left = rng.randint(*self.BURST_SIZE) - 1
            return pause, self._send_email()
        kind = rng.choices(self._kinds, self._weights)[0]
        return pause, self._makers[kind]()

    def _seconds(self, low: float, high: float) -> float:
        return self._rng.uniform(low, high) / self._speed

    def _send_email(self) -> Planned:
        rng = self._rng
        job = Job(
            "send_email", f"user{rng.randrange(10_000)}@example.org", self._seconds(0.05, 0.3)
        )
        roll = rng.random()
        if roll < 0.10:  # the mail server is briefly unavailable
            job = attrs.evolve(
                job,
                failures=rng.randint(1, 2),
                error=ConnectionError,
                message="SMTP 421: service not available, try again later",
            )
        elif roll < 0.12:  # no point retrying
            job = attrs.evolve(
                job, failures=1, error=ValueError, message="SMTP 550: mailbox unavailable"
            )
        return Planned(job, priority=5, retry=self._retry["send_email"])

    def _resize_image(self) -> Planned:
        rng = self._rng
        path = f"uploads/img-{self._count}.jpg"
        job = Job("resize_image", path, self._seconds(0.2, 1.0))
        roll = rng.random()
        if roll < 0.04:
            job = attrs.evolve(
                job, failures=1, error=ValueError, message=f"cannot identify image file {path!r}"
            )
        elif roll < 0.10:
            job = attrs.evolve(
                job, failures=1, error=OSError, message="object storage: read timed out"
            )
        return Planned(job, retry=self._retry["resize_image"])

    def _send_reminder(self) -> Planned:
        rng = self._rng
        job = Job("send_reminder", f"user{rng.randrange(10_000)}", self._seconds(0.02, 0.1))
        delay = self._seconds(1.0, 8.0)
        # Some users act before the reminder is due: it is cancelled while scheduled.
        cancel_after = delay * rng.uniform(0.1, 0.8) if rng.random() < 0.2 else None
        return Planned(job, priority=1, delay=delay, cancel_after=cancel_after)

    def _charge_card(self) -> Planned:
        rng = self._rng
        job = Job("charge_card", f"order-{self._count}", self._seconds(0.1, 0.5))
        if rng.random() < 0.08:  # the payment gateway hangs; never retried (not idempotent)
            job = attrs.evolve(job, failures=1, hangs=True)
        return Planned(job, priority=10, timeout=2.0 / self._speed)

    def _sync_inventory(self) -> Planned:
        rng = self._rng
        job = Job("sync_inventory", f"warehouse-{rng.randint(1, 5)}", self._seconds(0.5, 2.0))
        roll = rng.random()
        message = "inventory API: 503 Service Unavailable"
        if roll < 0.05:  # down for longer than the retries last
            job = attrs.evolve(job, failures=4, error=ConnectionError, message=message)
        elif roll < 0.25:
            job = attrs.evolve(
                job, failures=rng.randint(1, 2), error=ConnectionError, message=message
            )
        return Planned(job, retry=self._retry["sync_inventory"])

    def _generate_report(self) -> Planned:
        rng = self._rng
        job = Job("generate_report", f"report-{self._count}", self._seconds(1.0, 4.0))
        if rng.random() < 0.05:
            job = attrs.evolve(job, failures=2, error=OSError, message="No space left on device")
        delay = self._seconds(1.0, 8.0) if rng.random() < 0.5 else None
        return Planned(job, priority=-5, retry=self._retry["generate_report"], delay=delay)

    def _export_archive(self) -> Planned:
        rng = self._rng
        job = Job("export_archive", f"account-{rng.randrange(1000)}", self._seconds(3.0, 8.0))
        # Exports are slow; the operator gives up on some well before they could finish.
        cancel_after = self._seconds(0.5, 2.5) if rng.random() < 0.4 else None
        return Planned(job, priority=-5, cancel_after=cancel_after)


async def perform(job: Job) -> str:
    """Do a job's pretend work, failing on the attempts its script says. Always a checkpoint."""
    if current_task().attempts <= job.failures:
        if job.hangs:
            await trio.sleep_forever()  # the task's timeout ends this attempt
        await trio.sleep(job.duration / 2)
        raise job.error(job.message)
    await trio.sleep(job.duration)
    return f"{job!r} done"
