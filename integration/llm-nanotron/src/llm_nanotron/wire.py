"""Messages between the engine and its workers: plain pickle over a ``multiprocessing`` connection.

Tensors travel by value. ``Connection.send`` would use torch's shared-memory reductions, which
hand file descriptors between processes that multiprocessing did not start; plain pickle copies.
"""

from __future__ import annotations

import pickle
from typing import Any


def send(connection: Any, message: Any) -> None:
    connection.send_bytes(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))


def receive(connection: Any) -> Any:
    return pickle.loads(connection.recv_bytes())
