"""llm-core: the orchestrator of the llmt toolkit.

Kept import-light on purpose: importing ``llm_core`` loads no plugin, no pydantic model of a
recipe and never torch. Import the submodules you need (``llm_core.registry``, ``llm_core.types``).
"""

__version__ = "0.1.0"

from llm_core.hookspecs import hookimpl  # noqa: E402  (pluggy only: still light)

__all__ = ["__version__", "hookimpl"]
