"""``code``: runs the model's program against unit tests inside the sandbox.

The reference is either a string of test code, or a mapping ``{"test": ..., "entry_point": ...}``
(HumanEval's shape, whose tests define ``check(candidate)``; the verifier then calls
``check(<entry_point>)``). The program passes when it exits 0 within the limits.
"""

from __future__ import annotations

import re
import time
from typing import Any, Literal

from pydantic import Field

from llm_core.config import Config
from llm_core.types import Verdict

_FENCE = re.compile(r"```(?:python|py)?\s*\n(.*?)```", re.DOTALL)


def extract_code(completion: str) -> str:
    """The last fenced code block if there is one, else the completion as it is."""
    blocks = _FENCE.findall(completion)
    return blocks[-1] if blocks else completion


def build_program(prompt: str, completion: str, reference: Any, include_prompt: bool) -> str:
    code = extract_code(completion)
    if include_prompt:
        code = prompt + code
    if isinstance(reference, dict):
        tests = str(reference.get("test", ""))
        entry = reference.get("entry_point")
        call = f"\n\ncheck({entry})\n" if entry else "\n"
        return f"{code}\n\n{tests}{call}"
    return f"{code}\n\n{reference or ''}\n"


class CodeConfig(Config):
    include_prompt: bool = Field(False, description="prepend the prompt (HumanEval: completion is the body)")
    isolation: Literal["auto", "bwrap", "rlimits"] = Field(
        "auto", description="auto: bwrap when installed and working, else the weaker fallback (warned); "
                            "bwrap: refuse to fall back; rlimits: the fallback")
    wall_seconds: float = Field(10.0, gt=0)
    cpu_seconds: int = Field(5, gt=0)
    memory_mb: int = Field(1024, gt=0)
    processes: int = Field(32, gt=0)
    output_bytes: int = Field(64_000, gt=0)


class CodeVerifier:
    """1.0 when the program and its tests run cleanly in the sandbox, else 0.0 with the reason."""

    def __init__(self, config: CodeConfig | None = None):
        from llm_rlvr.sandbox import Sandbox, SandboxLimits

        config = config or CodeConfig()
        self.include_prompt = config.include_prompt
        limits = SandboxLimits(wall_seconds=config.wall_seconds, cpu_seconds=config.cpu_seconds,
                               memory_mb=config.memory_mb, processes=config.processes,
                               output_bytes=config.output_bytes)
        self.sandbox = Sandbox(limits, isolation=config.isolation)

    def verify(self, prompt: str, completion: str, reference: Any) -> Verdict:
        start = time.perf_counter()
        result = self.sandbox.run(build_program(prompt, completion, reference, self.include_prompt))
        cost = time.perf_counter() - start
        if result.ok:
            return Verdict(1.0, True, "tests passed", cost)
        if result.timed_out:
            return Verdict(0.0, False, "timed out", cost)
        if result.output_truncated:
            return Verdict(0.0, False, "output limit exceeded", cost)
        last = (result.stderr.strip().splitlines() or ["(no stderr)"])[-1]
        return Verdict(0.0, False, f"exit {result.returncode}: {last}"[:200], cost)
