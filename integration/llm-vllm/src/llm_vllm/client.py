"""JSON over HTTP to a vLLM server (standard library only): completions, collective RPC, cache and sleep."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


class VllmError(RuntimeError):
    """The vLLM server refused or failed a request; the message carries its answer."""


class VllmClient:
    def __init__(self, url: str, timeout_s: float = 900.0):
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s

    def request(self, path: str, body: dict[str, Any] | None = None, method: str = "POST") -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:2000]
            raise VllmError(f"vLLM {method} {path} answered {exc.code}: {detail}") from None
        except urllib.error.URLError as exc:
            raise VllmError(f"vLLM server at {self.url} is unreachable ({exc.reason}); is it running?") from None
        return json.loads(raw) if raw else None

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=5) as response:
                return response.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.request("/v1/completions", body)

    def rpc(self, method: str, **kwargs: Any) -> list[Any]:
        """Call ``method`` on every worker (``/collective_rpc``); one result per worker."""
        answer = self.request("/collective_rpc", {"method": method, "kwargs": kwargs})
        return (answer or {}).get("results", [])

    def reset_prefix_cache(self) -> None:
        """Drop cached prompt KV blocks: after new weights they would be stale."""
        self.request("/reset_prefix_cache", {})

    def sleep(self, level: int = 1) -> None:
        self.request(f"/sleep?level={level}", {})

    def wake_up(self) -> None:
        self.request("/wake_up", {})
