"""Plugin entry point of llm-nanotron: the ``nanotron`` training engine.

nanotron and torch are imported inside the factory, so importing this stays light.
"""

from __future__ import annotations

from typing import Any

from llm_core import hookimpl
from llm_nanotron.options import NanotronOptions


def nanotron_backend(config: NanotronOptions) -> Any:
    """The builder of nanotron engines of one parallel layout (``train_engine(request)``)."""
    from llm_nanotron.engine import NanotronBackend

    return NanotronBackend(config)


@hookimpl
def register_engines(registry: Any) -> None:
    registry.add("nanotron", nanotron_backend, config=NanotronOptions,
                 summary="nanotron 0.4 tensor / pipeline / data parallel training (gloo on CPU, NCCL on GPU)")
