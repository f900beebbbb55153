"""A worker process of a nanotron engine: joins the process group, then runs the client's commands.

Started by ``llm_nanotron.pool`` as ``python -m llm_nanotron.worker`` with torchrun's environment
(``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) and the client's
address and key. Every command is ``(method, kwargs, handles to free)``; the reply is
``("ok", result)`` or ``("error", traceback)``. The worker exits when the client closes its end.
"""

from __future__ import annotations

import os
import traceback
import warnings
from multiprocessing.connection import Client
from typing import Any

from llm_nanotron.wire import receive, send

COMMANDS = ("build", "copy", "logprobs", "top_logprobs", "forward", "backward", "optimizer_step", "shards", "save",
            "load")


def serve(connection: Any) -> None:
    runtime = None
    while True:
        try:
            method, kwargs, to_free = receive(connection)
        except (EOFError, ConnectionError):
            return
        if method == "exit":
            return
        try:
            if method == "init":
                from llm_nanotron.runtime import Runtime

                runtime = Runtime(kwargs)
                result = runtime.ranks()
            else:
                if method not in COMMANDS:
                    raise ValueError(f"unknown command {method!r}")
                runtime.free(to_free)
                result = getattr(runtime, method)(**kwargs)
            send(connection, ("ok", result))
        except BaseException:  # noqa: BLE001 - every failure goes back to the client, with its traceback
            send(connection, ("error", f"rank {os.environ.get('RANK')}: {traceback.format_exc()}"))


def main() -> None:
    # torch deprecates the coalesced all-reduce that nanotron 0.4 uses for tied weights
    warnings.filterwarnings("ignore", category=FutureWarning, module="torch.distributed")
    warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)  # nanotron's helpers
    host, port = os.environ["LLMT_NANOTRON_CLIENT"].rsplit(":", 1)
    connection = Client((host, int(port)), authkey=bytes.fromhex(os.environ["LLMT_NANOTRON_KEY"]))
    send(connection, int(os.environ["RANK"]))
    try:
        serve(connection)
    finally:
        connection.close()


if __name__ == "__main__":
    main()
