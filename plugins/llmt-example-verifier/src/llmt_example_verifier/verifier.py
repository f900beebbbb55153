"""``json_keys``: rewards a completion that is (or ends with) a JSON object holding required keys.

A typical structured-output reward: full score when the object parses and has every required key,
partial credit per key present, and, when the reference is an object, agreement on the values.
"""

from __future__ import annotations

import json
from typing import Any

from llm_core.types import Verdict


def _last_json_object(text: str) -> dict[str, Any] | None:
    """The last parseable ``{...}`` in the text (models often wrap JSON in prose or fences)."""
    decoder = json.JSONDecoder()
    found = None
    for start in (i for i, ch in enumerate(text) if ch == "{"):
        try:
            obj, _ = decoder.raw_decode(text[start:])
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            found = obj
    return found


class JsonKeysVerifier:
    def __init__(self, config: Any):
        """``config`` is the validated ``JsonKeysConfig`` the registry hands every factory."""
        self.required_keys = list(config.required_keys)
        self.match_reference_values = config.match_reference_values

    def verify(self, prompt: str, completion: str, reference: Any) -> Verdict:
        obj = _last_json_object(completion)
        if obj is None:
            return Verdict(0.0, False, "no JSON object in the completion")
        missing = [k for k in self.required_keys if k not in obj]
        score = 1.0 - len(missing) / len(self.required_keys) if self.required_keys else 1.0
        if missing:
            return Verdict(score, False, f"missing keys {missing}")
        if self.match_reference_values and isinstance(reference, dict):
            wrong = [k for k, v in reference.items() if obj.get(k) != v]
            if wrong:
                return Verdict(0.5, False, f"wrong values for {wrong}")
        return Verdict(1.0, True, "ok")
