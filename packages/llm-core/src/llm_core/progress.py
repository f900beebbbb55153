"""Progress of long work: a live bar on a terminal, a plain line every so often in a log file.

``progress`` counts shards of a sharded stage; ``TrainingProgress`` follows a training loop (step,
headline metric such as loss or reward, speed and time left). ``configure_logging`` sets up the
log lines as ``llmt run`` shows them, in the command's process and in the worker processes of the
local executor (``worker_logging_level`` / ``configure_worker_logging``).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def configure_logging(level: int = logging.INFO) -> None:
    """llmt's own lines (the ``llmt`` logger) from ``level`` up, other libraries' from WARNING up,
    each line with its time, on stderr."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("llmt").setLevel(level)


def worker_logging_level() -> int | None:
    """What a worker process needs to log as this one does: the ``llmt`` logger's level where this
    process has set up logging (a handler on the root logger, as ``llmt run`` installs), else None."""
    return logging.getLogger("llmt").getEffectiveLevel() if logging.getLogger().handlers else None


def configure_worker_logging(level: int | None) -> None:
    """Initializer of a worker process: ``configure_logging(level)``, or nothing for None. A
    spawned process starts with no handlers, so without it the INFO lines of shard code are lost."""
    if level is not None:
        configure_logging(level)


@contextmanager
def progress(total: int, desc: str) -> Iterator[Any]:
    if sys.stderr.isatty():
        from rich.progress import Progress

        with Progress(transient=True) as bar:
            task = bar.add_task(desc or "working", total=total)
            yield lambda n=1: bar.advance(task, n)
        return
    state = {"done": 0, "last": time.monotonic()}

    def advance(n: int = 1) -> None:
        state["done"] += n
        now = time.monotonic()
        if state["done"] == total or now - state["last"] > 10:
            state["last"] = now
            print(f"{desc}: {state['done']}/{total}", file=sys.stderr, flush=True)

    yield advance


def format_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


class TrainingProgress:
    """``stage: step 40/200 loss 2.3104 | 0.41 s/step, 1m05s left``.

    On a terminal (stderr is a TTY) a rich bar redraws every step; otherwise a line is printed
    every ``every`` steps and at the end, so a log file shows steady progress without flooding.
    """

    def __init__(self, name: str, total: int, *, start: int = 0, every: int = 10, headline: str = "loss",
                 enabled: bool = True, stream: Any = None):
        self.name, self.total, self.start, self.every, self.headline = name, total, start, every, headline
        self.enabled = enabled and total > start
        self.stream = stream or sys.stderr
        self._bar: Any = None
        self._task: Any = None
        self._began = time.monotonic()

    def __enter__(self) -> TrainingProgress:
        if self.enabled and self.stream.isatty():
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[status]}"),
                                 TimeRemainingColumn(), transient=False)
            self._bar.__enter__()
            self._task = self._bar.add_task(self.name, total=self.total, completed=self.start, status="")
        return self

    def line(self, step: int, metrics: dict[str, Any]) -> str:
        value = metrics.get(self.headline)
        shown = f" {self.headline} {value:.4f}" if isinstance(value, (int, float)) else ""
        done = step - self.start
        per_step = (time.monotonic() - self._began) / done if done else 0.0
        left = per_step * (self.total - step)
        return f"{self.name}: step {step}/{self.total}{shown} | {per_step:.2f} s/step, {format_duration(left)} left"

    def update(self, step: int, metrics: dict[str, Any]) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            value = metrics.get(self.headline)
            status = f"{self.headline} {value:.4f}" if isinstance(value, (int, float)) else ""
            self._bar.update(self._task, completed=step, status=status)
        elif (step - self.start) % self.every == 0 or step == self.total or step == self.start + 1:
            print(self.line(step, metrics), file=self.stream, flush=True)

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
