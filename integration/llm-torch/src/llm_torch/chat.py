"""Pinned chat templates (ChatML, Llama-3) and conversation rendering with assistant-only masks.

A template is a Jinja string in the Hugging Face convention (``messages``, ``add_generation_prompt``,
``bos_token``), so that the template saved with a checkpoint works in ``transformers`` too. SFT,
eval and serving all render through :func:`render`, with the template stored in the checkpoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
LLAMA3 = (
    "{{ bos_token }}{% for message in messages %}<|start_header_id|>{{ message['role'] }}"
    "<|end_header_id|>\n\n{{ message['content'] }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
TEMPLATES = {"chatml": CHATML, "llama3": LLAMA3}
# The token that ends an assistant turn: generation stops there.
END_OF_TURN = {"chatml": "<|im_end|>", "llama3": "<|eot_id|>"}
SPECIAL_TOKENS = {
    "chatml": ("<|im_start|>", "<|im_end|>"),
    "llama3": ("<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"),
}


@lru_cache(maxsize=16)
def _compile(template: str) -> Any:
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = _raise
    return env.from_string(template)


def _raise(message: str) -> None:
    raise ValueError(f"chat template: {message}")


def render(template: str, messages: Sequence[Any], *, add_generation_prompt: bool = False,
           bos_token: str = "", eos_token: str = "") -> str:
    """Render messages (``Message`` objects or ``{role, content}`` dicts) to the prompt string."""
    plain = [m if isinstance(m, dict) else {"role": m.role, "content": m.content} for m in messages]
    return _compile(template).render(messages=plain, add_generation_prompt=add_generation_prompt,
                                     bos_token=bos_token, eos_token=eos_token)


def template_source(name_or_source: str) -> str:
    """A pinned template's Jinja source by name (``chatml``, ``llama3``), or the source itself."""
    if name_or_source in TEMPLATES:
        return TEMPLATES[name_or_source]
    if "{%" in name_or_source or "{{" in name_or_source:
        return name_or_source
    raise ValueError(f"unknown chat template {name_or_source!r}; pinned templates: {sorted(TEMPLATES)} "
                     "(or give a Jinja source)")
