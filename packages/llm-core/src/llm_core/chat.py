"""Chat templates and the one way every package renders chats: SFT data, RL prompts, eval alike.

A template is a Jinja string in the Hugging Face convention (``messages``, ``add_generation_prompt``,
``bos_token``), so that the template saved with a checkpoint works in ``transformers`` too. Two are
pinned by name (ChatML, Llama-3); a checkpoint carries the one it was trained with, and its
tokenizer (``llm_core.engines.Tokenizer``) renders with it. On top of that tokenizer:

* ``render_prompt``: a prompt's ids, ready for the model to answer (RL, rejection sampling, eval);
* ``encode_conversation``: a conversation's ids and its assistant-only loss mask (SFT), rendered
  so that training sees exactly the prompt that inference renders.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from llm_core.engines import Tokenizer

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


def render_prompt(tokenizer: Tokenizer, prompt: str, *, system_prompt: str = "", response_prefix: str = "",
                  prompt_format: str | None = None) -> list[int]:
    """Token ids of a prompt ready for the model to answer, plus an optional response prefix.

    With ``prompt_format`` (e.g. ``"Question: {prompt}\\nSolution:"``) the prompt is plain text, for
    a base model that has no chat template (R1-Zero); otherwise the tokenizer's pinned template
    renders a system message (if any) and the user turn, with the generation prompt.
    """
    if prompt_format is not None:
        return tokenizer.encode(prompt_format.format(prompt=prompt) + response_prefix)
    messages = ([{"role": "system", "content": system_prompt}] if system_prompt else [])
    messages.append({"role": "user", "content": prompt})
    return tokenizer.encode(tokenizer.apply_chat_template(messages, add_generation_prompt=True) + response_prefix)


def encode_conversation(tokenizer: Tokenizer, messages: Sequence[Any]) -> tuple[list[int], list[int]]:
    """Token ids of the rendered conversation and a mask (1 = assistant token, trained on).

    The conversation is rendered one message at a time: an assistant turn's tokens are what the
    full rendering adds after the generation prompt ``render(messages[:i], add_generation_prompt)``,
    so training sees exactly the prompt that inference will render. A template for which a prompt
    is not a prefix of the conversation is an error.
    """
    pieces: list[tuple[str, int]] = []
    done = ""
    for i, message in enumerate(messages):
        role = message["role"] if isinstance(message, dict) else message.role
        if role == "assistant":
            prompt = tokenizer.apply_chat_template(messages[:i], add_generation_prompt=True)
            done = _extend(pieces, done, prompt, 0, i)
        full = tokenizer.apply_chat_template(messages[: i + 1])
        done = _extend(pieces, done, full, int(role == "assistant"), i)
    ids: list[int] = []
    mask: list[int] = []
    for text, trained in pieces:
        piece = tokenizer.encode(text)
        ids += piece
        mask += [trained] * len(piece)
    return ids, mask


def _extend(pieces: list[tuple[str, int]], done: str, rendered: str, trained: int, index: int) -> str:
    if not rendered.startswith(done):
        raise ValueError(f"chat template is not prefix-stable at messages[{index}]: the rendering of the "
                         "earlier messages is not a prefix of the rendering with this one")
    if len(rendered) > len(done):
        pieces.append((rendered[len(done):], trained))
    return rendered
