"""The worker processes of the local executor log as the process that started them does."""

from __future__ import annotations

import functools
import logging

from llm_core.executors.local import LocalExecutor, LocalExecutorConfig
from llm_core.progress import configure_logging, worker_logging_level


def test_workers_keep_the_llmt_info_lines(capfd):
    llmt, root = logging.getLogger("llmt"), logging.getLogger()
    saved_level, saved_handlers = llmt.level, list(root.handlers)
    try:
        configure_logging()  # as `llmt run` does
        assert worker_logging_level() == logging.INFO
        executor = LocalExecutor(LocalExecutorConfig(workers=2, start_method="spawn"))
        # A logger pickles by name, so the worker logs through its own "llmt" logger.
        log_shard = functools.partial(logging.getLogger("llmt").info, "shard %d done in a worker")
        executor.map(log_shard, [0, 1, 2])
        err = capfd.readouterr().err
        for index in range(3):
            assert f"shard {index} done in a worker" in err
    finally:
        llmt.setLevel(saved_level)
        for handler in list(root.handlers):  # a copy: the loop removes from the list
            if handler not in saved_handlers:
                root.removeHandler(handler)


def test_a_process_without_logging_set_up_leaves_its_workers_alone(monkeypatch):
    monkeypatch.setattr(logging.getLogger(), "handlers", [])
    assert worker_logging_level() is None
