"""The one measurement: a command in its own subprocess, its wall time and its own peak memory.

Wall seconds are taken here around the child (Python start-up and imports included, as a
user running the stage sees them). Peak memory is the larger of the child's own
``ru_maxrss`` from ``os.wait4`` (that child and the descendants it waited for -- unlike
``RUSAGE_CHILDREN``, which is the maximum over every child so far) and its high-water mark
``VmHWM`` (plus its children's resident memory) polled from ``/proc`` twice a second.
Linux carries the forking process's resident size into the child's ``ru_maxrss`` across
``exec``, so the harness keeps itself small (no DuckDB, no data in the parent: the extract
is written by a child too) and records its own peak in ``results.json``
(``harness_peak_mb``): no child's peak below it is meaningful. A heartbeat line is printed
every ``heartbeat`` seconds while the child runs, with its current memory and last output line.
CPU seconds are the larger of the child's ``rusage`` and its own and its children's CPU time
polled from ``/proc`` (a JVM the child starts and never waits for is in no ``rusage``).

>>> maxrss_mb(2_000_000, "linux"), maxrss_mb(2_048_000_000, "darwin")
(2048.0, 2048.0)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

from pipeline.config import PROJECT_ROOT

MB = 1_000_000  # memory is reported in MB = 10^6 bytes (2 GB = 2000 MB: the stricter reading)


@dataclass
class Measurement:
    """One subprocess: wall seconds, peak resident memory, outcome."""

    name: str
    status: str  # ok | failed | timeout
    seconds: float
    peak_mb: Optional[float]
    exit_code: Optional[int] = None
    error: str = ""
    log: str = ""
    in_process_seconds: Optional[float] = None  # the child's own timer, without start-up
    cpu_seconds: Optional[float] = None  # user + system CPU of the child (less sensitive to a busy machine)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def maxrss_mb(ru_maxrss: int, system: str = sys.platform) -> float:
    """``ru_maxrss`` in MB: kilobytes on Linux, bytes on macOS."""
    return (ru_maxrss if system == "darwin" else ru_maxrss * 1024) / MB


def error_line(log_text: str) -> str:
    """The one line saying why a run failed: the CLI's ``error:`` line, else a traceback's last line.

    >>> error_line("spinner\\nerror: table 'estimates' is missing\\n")
    "error: table 'estimates' is missing"
    >>> error_line("Traceback (most recent call last):\\n  File x\\nModuleNotFoundError: No module named 'y'\\n")
    "ModuleNotFoundError: No module named 'y'"
    """
    lines = [line.strip() for line in log_text.splitlines() if line.strip()]
    for line in reversed(lines):
        if line.lower().startswith("error"):
            return line[:300]
    return (lines[-1] if lines else "no output")[:300]


def _status_kb(pid: int, field: str) -> Optional[int]:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def children_of(pid: int) -> list[int]:
    """The pids of ``pid``'s children now, from ``/proc`` (none where there is no ``/proc``)."""
    try:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except (OSError, ValueError):
        return []


def rss_mb(pid: int, children: Sequence[int]) -> tuple[Optional[float], Optional[float]]:
    """(resident memory now, high-water mark) of ``pid`` plus its ``children``'s resident memory now,
    from ``/proc`` (None where there is no ``/proc``). ``VmHWM`` starts afresh at ``exec``."""
    now, peak = _status_kb(pid, "VmRSS"), _status_kb(pid, "VmHWM")
    if now is None:
        return None, None
    resident = sum(_status_kb(child, "VmRSS") or 0 for child in children)
    return (now + resident) * 1024 / MB, (max(now, peak or 0) + resident) * 1024 / MB


def _cpu_ticks(pid: int) -> Optional[int]:
    """User + system CPU of ``pid`` itself so far, in clock ticks (``/proc/<pid>/stat`` fields 14-15)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, ValueError, IndexError):
        return None


def tree_cpu_ticks(pid: int, children: Sequence[int], seen: dict[int, int]) -> None:
    """Record in ``seen`` the CPU ticks so far of ``pid`` and of each of its ``children`` (kept at
    their last value once they are gone). A child the command never waits for -- Spark's JVM, which
    pyspark starts and the pipeline leaves to die with it -- is in no ``rusage``; this is how its
    CPU time is counted."""
    for one in (pid, *children):
        ticks = _cpu_ticks(one)
        if ticks is not None:
            seen[one] = max(seen.get(one, 0), ticks)


def stage_env() -> dict:
    env = dict(os.environ)
    env.setdefault("GX_ANALYTICS_ENABLED", "false")  # no telemetry from Great Expectations
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    env.setdefault("COLUMNS", "200")  # rich: one error line, not wrapped at 80
    env["PYTHONUNBUFFERED"] = "1"
    return env


def measure(name: str, command: Sequence[str], log_path: Path, timeout: Optional[float] = None,
            env: Optional[dict] = None, heartbeat: float = 60.0,
            say: Optional[Callable[[str], None]] = None) -> Measurement:
    """Run ``command``; stdout and stderr go to ``log_path``; a timeout kills the child's process group."""
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    timed_out = threading.Event()
    finished = threading.Event()
    polled = [0.0]
    cpu_seen: dict[int, int] = {}
    with open(log_path, "wb") as log:
        started = time.perf_counter()
        process = subprocess.Popen(list(command), stdout=log, stderr=subprocess.STDOUT, cwd=PROJECT_ROOT,
                                   env=env if env is not None else stage_env(), start_new_session=True)

        def watch() -> None:
            next_beat = heartbeat
            while not finished.wait(0.5):
                children = children_of(process.pid)  # read once a poll: memory and CPU both use it
                now, high = rss_mb(process.pid, children)
                if high is not None:
                    polled[0] = max(polled[0], high)
                tree_cpu_ticks(process.pid, children, cpu_seen)
                elapsed = time.perf_counter() - started
                if timeout and elapsed > timeout and not timed_out.is_set():
                    timed_out.set()
                    try:
                        os.killpg(process.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                if say and heartbeat and elapsed >= next_beat:
                    memory = f", {now:,.0f} MB now" if now is not None else ""
                    said = last_line(log_path)
                    say(f"{name} still running: {elapsed:,.0f} s{memory}" + (f" -- {said}" if said else ""))
                    next_beat += heartbeat

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            if hasattr(os, "wait4"):
                _, status, usage = os.wait4(process.pid, 0)
                exit_code = os.waitstatus_to_exitcode(status)
                process.returncode = exit_code  # reaped here: keep Popen from waiting again
                peak: Optional[float] = maxrss_mb(usage.ru_maxrss)
                cpu: Optional[float] = usage.ru_utime + usage.ru_stime
            else:  # pragma: no cover - no per-child rusage (Windows)
                exit_code, peak, cpu = process.wait(), None, None
        except BaseException:  # Ctrl-C here: the child runs in its own session, so stop it too
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            raise
        finally:
            finished.set()
            watcher.join()
        seconds = time.perf_counter() - started
    if polled[0]:
        peak = max(peak or 0.0, polled[0])
    if cpu_seen and hasattr(os, "sysconf"):
        # rusage counts the child and the descendants it waited for; the polls count it and its
        # children alive at the last poll. Either is a lower bound; the larger one double-counts nothing.
        polled_cpu = sum(cpu_seen.values()) / os.sysconf("SC_CLK_TCK")
        cpu = max(cpu or 0.0, polled_cpu)
    text = log_path.read_text(encoding="utf-8", errors="replace")
    if timed_out.is_set():
        status, error = "timeout", f"killed after {timeout:.0f} s"
    elif exit_code != 0:
        status, error = "failed", error_line(text)
    else:
        status, error = "ok", ""
    try:
        shown = str(log_path.relative_to(PROJECT_ROOT))
    except ValueError:
        shown = str(log_path)
    return Measurement(name, status, seconds, peak, exit_code, error, shown, cpu_seconds=cpu)


def last_line(log_path: Path, limit: int = 160) -> str:
    """The last non-empty line a child has written so far (its own progress), shortened."""
    try:
        with open(log_path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 4096))
            lines = [line.strip() for line in handle.read().decode("utf-8", "replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1][:limit] if lines else ""


def last_json(log_path: Path) -> dict:
    """The last line of a child's log read as JSON (the bare load and gate children print one)."""
    try:
        return json.loads(Path(log_path).read_text().strip().splitlines()[-1])
    except (ValueError, IndexError, OSError):
        return {}
