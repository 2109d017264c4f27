# SPDX-License-Identifier: MIT
"""The driver: fresh pinned subprocesses, variants alternated, medians and paired ratios.

Within each repetition every variant of a comparison runs once, in a fixed
rotation (A, B, C, A, B, C, ...), each in a new interpreter pinned to one CPU
with ``taskset``, so that the machine's noise hits all of them alike. Paired
ratios divide a variant's number by the reference's number from the same
repetition, then take the median over repetitions.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from ._core import Comparison, Target, median
from ._registry import MODULES, load

PACKAGE_DIR = Path(__file__).resolve().parent
ROOT = PACKAGE_DIR.parent
DEFAULT_JSON = PACKAGE_DIR / "results.json"
VERSIONED = (
    "trio",
    "attrs",
    "outcome",
    "aiojobs",
    "uvloop",
    "prometheus-client",
    "starlette",
    "httpx",
    "trio_workq",
)
EN_DASH = "\N{EN DASH}"  # for ranges in the tables
# Settings that would change what a child measures (debug hooks, allocator tracing).
UNSET_IN_CHILDREN = ("PYTHONDEVMODE", "PYTHONASYNCIODEBUG", "PYTHONTRACEMALLOC", "PYTHONMALLOC")


@dataclass
class Run:
    """One subprocess: one variant, one repetition."""

    variant: str
    rep: int
    status: str  # "ok", "n/a" or "failed"
    metrics: dict[str, float] = field(default_factory=dict[str, float])
    reason: str = ""
    wall_s: float = 0.0
    load_1min: float = 0.0


@dataclass
class Outcome:
    """Every run of one comparison, and what follows from them."""

    comparison: Comparison
    runs: list[Run] = field(default_factory=list[Run])

    def runs_of(self, variant: str) -> list[Run]:
        return [run for run in self.runs if run.variant == variant]

    def values(self, variant: str, metric: str) -> dict[int, float]:
        """The variant's *metric* by repetition, from its successful runs."""
        return {
            run.rep: run.metrics[metric]
            for run in self.runs_of(variant)
            if run.status == "ok" and metric in run.metrics
        }

    def paired_ratio(self, variant: str, reference: str, metric: str) -> float | None:
        mine = self.values(variant, metric)
        theirs = self.values(reference, metric)
        ratios = [mine[rep] / theirs[rep] for rep in mine if theirs.get(rep)]
        return median(ratios) if ratios else None

    def target_value(self, target: Target) -> float | None:
        if target.reference is not None:
            return self.paired_ratio(target.variant, target.reference, target.metric)
        values = list(self.values(target.variant, target.metric).values())
        return median(values) if values else None


# ------------------------------------------------------------------ running


def pin_prefix(cpu: int, no_pin: bool) -> tuple[list[str], str]:
    """The ``taskset`` prefix for children and a note on what was done."""
    if no_pin:
        return [], "not pinned (--no-pin)"
    if shutil.which("taskset") is None:
        return [], "not pinned: taskset not found (util-linux)"
    if cpu not in os.sched_getaffinity(0):
        return [], f"not pinned: CPU {cpu} is not available to this process"
    return ["taskset", "-c", str(cpu)], f"each run pinned with `taskset -c {cpu}`"


def child_arguments(key: str, variant: str, quick: bool) -> list[str]:
    """The interpreter's arguments for one measurement."""
    arguments = ["-m", f"{__package__}._child", key, variant]
    return [*arguments, "--quick"] if quick else arguments


@dataclass(frozen=True)
class Launcher:
    """How every measurement's subprocess starts."""

    prefix: list[str]  # taskset, or nothing
    code: Path  # the directory holding the snapshot of benchmarks/ and trio_workq/
    quick: bool
    timeout: float

    def run(self, key: str, variant: str, rep: int) -> Run:
        env = {name: value for name, value in os.environ.items() if name not in UNSET_IN_CHILDREN}
        command = [*self.prefix, sys.executable, *child_arguments(key, variant, self.quick)]
        started = time.perf_counter()
        run = Run(variant, rep, "failed", load_1min=os.getloadavg()[0])
        try:
            done = subprocess.run(
                command,
                cwd=self.code,
                env=env,
                capture_output=True,
                text=True,
                timeout=self.timeout,
            )
        except subprocess.TimeoutExpired:
            run.reason = f"timed out after {self.timeout:g} s"
            return run
        finally:
            run.wall_s = time.perf_counter() - started
        lines = done.stdout.strip().splitlines()
        if done.returncode != 0 or not lines:
            run.reason = (done.stderr.strip() or done.stdout.strip())[-3000:]
            return run
        reply: dict[str, Any] = json.loads(lines[-1])
        run.status = reply["status"]
        run.metrics = reply.get("metrics", {})
        run.reason = reply.get("reason", "")
        return run


def snapshot(into: Path) -> str:
    """Copy benchmarks/ and trio_workq/ into *into*; return a digest of trio_workq's sources.

    The children run from the copy (``python -m`` puts it first on their
    path), so edits made to the shared work tree during a run cannot mix two
    versions of the code in one table.
    """
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", DEFAULT_JSON.name)
    for name in (PACKAGE_DIR.name, "trio_workq"):
        shutil.copytree(ROOT / name, into / name, ignore=ignore)
    digest = hashlib.sha256()
    for path in sorted((into / "trio_workq").rglob("*.py")):
        digest.update(path.relative_to(into).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def measure(comparison: Comparison, reps: int, launcher: Launcher) -> Outcome:
    outcome = Outcome(comparison)
    if comparison.max_reps is not None:
        reps = min(reps, comparison.max_reps)
    given_up: set[str] = set()  # n/a or failed: no point in running it again
    for rep in range(reps):
        for variant in comparison.variants:
            if variant.key in given_up:
                continue
            run = launcher.run(comparison.key, variant.key, rep)
            outcome.runs.append(run)
            shown = ", ".join(f"{k}={v:.4g}" for k, v in run.metrics.items())
            last_line = (run.reason.splitlines() or [""])[-1]
            print(
                f"[{comparison.key} {rep + 1}/{reps}] {variant.key}: {run.status} "
                f"({run.wall_s:.1f} s) {shown or last_line}",
                file=sys.stderr,
                flush=True,
            )
            if run.status != "ok":
                given_up.add(variant.key)
                if run.status == "failed":
                    print(run.reason, file=sys.stderr, flush=True)
    return outcome


# ----------------------------------------------------------------- reporting


def _number(value: float, digits: int) -> str:
    return f"{value:,.{digits}f}"


def _cell(values: list[float], digits: int) -> str:
    if not values:
        return "n/a"
    text = _number(median(values), digits)
    if len(values) > 1:
        text += f" ({_number(min(values), digits)}{EN_DASH}{_number(max(values), digits)})"
    return text


def target_line(outcome: Outcome, target: Target) -> str:
    """The report line of a target: its value, its limit, and whether it was met."""
    value = outcome.target_value(target)
    digits = next(
        (
            c.digits
            for c in outcome.comparison.columns
            if c.metric == target.metric and not target.reference
        ),
        3,
    )
    if value is None:
        return f"- {target.label}: n/a ({target.describe_limit()})"
    text = f"- {target.label}: **{_number(value, digits)}** ({target.describe_limit()})"
    if target.limit is None:
        return text
    return f"{text}: {'met' if target.met(value) else '**not met**'}"


def table(outcome: Outcome) -> str:
    comparison = outcome.comparison
    reference = comparison.reference
    metric = comparison.ratio_metric
    header = ["variant", "runs", *(column.header for column in comparison.columns)]
    if reference and metric:
        ref_label = comparison.variant(reference).label.split(":")[0]
        header.append(f"ratio to {ref_label} (paired)")
    header.append("max RSS MB")
    lines = [
        f"### {comparison.title}",
        "",
        comparison.about,
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for variant in comparison.variants:
        runs = outcome.runs_of(variant.key)
        failed = [run for run in runs if run.status != "ok"]
        if failed and len(failed) == len(runs):
            why = "n/a: " + failed[0].reason if failed[0].status == "n/a" else "**FAILED**"
            padding = [""] * (len(header) - 3)
            lines.append("| " + " | ".join([variant.label, "0", why, *padding]) + " |")
            continue
        ok = sum(run.status == "ok" for run in runs)
        row = [variant.label, str(ok)]
        for column in comparison.columns:
            row.append(
                _cell(list(outcome.values(variant.key, column.metric).values()), column.digits)
            )
        if reference and metric:
            ratio = outcome.paired_ratio(variant.key, reference, metric)
            row.append("n/a" if ratio is None else f"{ratio:.3f}")
        row.append(_cell(list(outcome.values(variant.key, "maxrss_mb").values()), 0))
        lines.append("| " + " | ".join(row) + " |")
    if comparison.targets:
        lines.append("")
        lines.extend(target_line(outcome, target) for target in comparison.targets)
    return "\n".join(lines) + "\n"


def summary(outcomes: list[Outcome]) -> str:
    lines = [
        "### Targets",
        "",
        "| comparison | target | value | limit | met |",
        "|---|---|---|---|---|",
    ]
    for outcome in outcomes:
        for target in outcome.comparison.targets:
            if target.limit is None:
                continue
            value = outcome.target_value(target)
            verdict = "n/a" if value is None else ("yes" if target.met(value) else "**no**")
            shown = "n/a" if value is None else f"{value:,.3f}"
            limit = target.describe_limit().removeprefix("target ")
            lines.append(
                f"| {outcome.comparison.key} | {target.label} | {shown} | {limit} | {verdict} |"
            )
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- the machine


def _command_output(*command: str) -> str:
    try:
        return subprocess.run(
            command, cwd=ROOT, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def load_note() -> str:
    """What ``uptime`` says (the load of a shared machine), or the load averages."""
    return _command_output("uptime") or "load average: {:.2f}, {:.2f}, {:.2f}".format(
        *os.getloadavg()
    )


def machine() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            cpu = next(
                (
                    line.split(":", 1)[1].strip()
                    for line in cpuinfo
                    if line.startswith("model name")
                ),
                cpu,
            )
    except OSError:
        pass
    versions: dict[str, str] = {}
    for name in VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    commit = _command_output("git", "rev-parse", "--short", "HEAD")
    if commit and _command_output(
        "git", "--no-optional-locks", "status", "--porcelain", "--untracked-files=no"
    ):
        commit += " + uncommitted changes"
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "platform": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "versions": versions,
        "commit": commit or "unknown",
    }


def header(meta: dict[str, Any]) -> str:
    versions = ", ".join(
        f"{name} {version}" for name, version in meta["machine"]["versions"].items()
    )
    lines = [
        f"## trio_workq benchmarks, {meta['started']}",
        "",
        f"- command: `{meta['command']}`",
        f"- machine: {meta['machine']['cpu']}, {meta['machine']['cpus']} CPUs, "
        f"{meta['machine']['memory_gib']} GiB; {meta['machine']['platform']}",
        f"- {meta['machine']['python']}; {versions}",
        f"- trio_workq commit: {meta['machine']['commit']}; sources sha256:{meta['sources']}",
        f"- method: {meta['pinning']}; variants alternated within each of "
        f"{meta['reps']} repetition(s); medians (min{EN_DASH}max); paired ratios = median over "
        "repetitions of the per-repetition ratio; GC enabled",
        f"- load at start: {meta['load_start']}",
    ]
    if meta["quick"]:
        lines.append("- **quick mode**: tiny sizes, a smoke test; the numbers mean nothing")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ the CLI


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="trio_workq's benchmark suite (see docs/benchmarks.md).",
    )
    parser.add_argument("--reps", type=int, help="repetitions (default 3; 1 with --quick)")
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes: a smoke test, no timing meaning"
    )
    parser.add_argument(
        "--only", help=f"comma-separated comparisons to run (default all: {', '.join(MODULES)})"
    )
    parser.add_argument(
        "--json", type=Path, default=DEFAULT_JSON, help="where to write the raw results"
    )
    parser.add_argument("--cpu", type=int, default=1, help="the CPU to pin runs to (default 1)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin runs with taskset")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per run")
    parser.add_argument("--list", action="store_true", help="list the comparisons and exit")
    args = parser.parse_args(argv)
    if args.reps is None:
        args.reps = 1 if args.quick else 3
    if args.reps < 1:
        parser.error("--reps must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        keys = args.only.split(",") if args.only else list(MODULES)
        comparisons = [load(key.strip()) for key in keys]
    except KeyError as exc:
        print(exc.args[0], file=sys.stderr)
        return 2
    if args.list:
        for comparison in comparisons:
            print(f"{comparison.key}: {comparison.title}")
            for variant in comparison.variants:
                print(f"    {variant.key}: {variant.label}")
        return 0

    prefix, pinning = pin_prefix(args.cpu, args.no_pin)
    given = sys.argv[1:] if argv is None else argv
    with tempfile.TemporaryDirectory(prefix="trio_workq-bench-") as code:
        meta: dict[str, Any] = {
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": shlex.join(["python", "-m", __package__ or "benchmarks", *given]),
            "machine": machine(),
            "sources": snapshot(Path(code)),
            "pinning": pinning,
            "reps": args.reps,
            "quick": args.quick,
            "load_start": load_note(),
        }
        print(header(meta), flush=True)
        launcher = Launcher(prefix, Path(code), args.quick, args.timeout)
        outcomes: list[Outcome] = []
        began = time.perf_counter()
        for comparison in comparisons:
            outcome = measure(comparison, args.reps, launcher)
            outcomes.append(outcome)
            print(table(outcome), flush=True)
    meta["load_end"] = load_note()
    meta["duration_s"] = round(time.perf_counter() - began, 1)
    print(summary(outcomes))
    print(f"- load at end: {meta['load_end']}")
    print(f"- total time: {meta['duration_s']:.0f} s")

    failed = [
        f"{outcome.comparison.key}/{run.variant} (repetition {run.rep + 1})"
        for outcome in outcomes
        for run in outcome.runs
        if run.status == "failed"
    ]
    write_json(args.json, meta, outcomes)
    print(f"- raw results: {args.json}")
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def write_json(path: Path, meta: dict[str, Any], outcomes: list[Outcome]) -> None:
    comparisons: list[dict[str, Any]] = []
    for outcome in outcomes:
        comparison = outcome.comparison
        targets: list[dict[str, Any]] = []
        for target in comparison.targets:
            value = outcome.target_value(target)
            targets.append(
                {
                    "label": target.label,
                    "variant": target.variant,
                    "reference": target.reference,
                    "metric": target.metric,
                    "value": value,
                    "op": target.op,
                    "limit": target.limit,
                    "met": None if value is None or target.limit is None else target.met(value),
                }
            )
        comparisons.append(
            {
                "key": comparison.key,
                "title": comparison.title,
                "about": comparison.about,
                "reference": comparison.reference,
                "variants": [
                    {
                        "key": variant.key,
                        "label": variant.label,
                        "command": shlex.join(
                            ["python", *child_arguments(comparison.key, variant.key, meta["quick"])]
                        ),
                    }
                    for variant in comparison.variants
                ],
                "runs": [vars(run) for run in outcome.runs],
                "targets": targets,
            }
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"meta": meta, "comparisons": comparisons}, indent=2) + "\n")
