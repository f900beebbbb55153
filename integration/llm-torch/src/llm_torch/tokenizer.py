"""The text tokenizer: a ``tokenizers.Tokenizer`` plus special ids and the pinned chat template.

Load one from a checkpoint folder (``tokenizer.json`` + ``tokenizer_config.json``, the Hugging Face
files), or train a byte-level BPE on a corpus for a from-scratch run with :func:`train_bpe`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import fsspec

from llm_core import chat

EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"
# Every from-scratch tokenizer reserves the special tokens of both pinned chat templates, so that a
# pretrained model can be fine-tuned with either.
RESERVED_TOKENS = (EOS_TOKEN, PAD_TOKEN) + tuple(
    dict.fromkeys(t for tokens in chat.SPECIAL_TOKENS.values() for t in tokens))


class TextTokenizer:
    """Encode / decode text, render chats. ``chat_template`` is Jinja source (or None)."""

    def __init__(self, tokenizer: Any, *, eos_token: str, bos_token: str | None = None,
                 pad_token: str | None = None, chat_template: str | None = None,
                 template_name: str | None = None):
        self.backend = tokenizer
        self.eos_token, self.bos_token, self.pad_token = eos_token, bos_token, pad_token
        self.chat_template = chat_template
        self.template_name = template_name  # "chatml", "llama3", or None for an imported template
        self.eos_id = self._require_id(eos_token)
        self.bos_id = self._require_id(bos_token) if bos_token else None
        self.pad_id = self._require_id(pad_token) if pad_token else self.eos_id

    def _require_id(self, token: str) -> int:
        token_id = self.backend.token_to_id(token)
        if token_id is None:
            raise ValueError(f"token {token!r} is not in the tokenizer's vocabulary")
        return token_id

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size()

    def token_id(self, token: str) -> int | None:
        return self.backend.token_to_id(token)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``, no BOS / EOS added (chat templates add what they need)."""
        return self.backend.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self.backend.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return self.backend.decode(list(ids), skip_special_tokens=skip_special_tokens)

    # --- chat ---------------------------------------------------------------------------------

    def apply_chat_template(self, messages: Sequence[Any], add_generation_prompt: bool = False) -> str:
        """Render messages with this tokenizer's chat template (the one pinned in the checkpoint)."""
        if not self.chat_template:
            raise ValueError("this tokenizer has no chat template; run an SFT stage (chat_template = "
                             "'chatml' or 'llama3') or set one with with_chat_template()")
        return chat.render(self.chat_template, messages, add_generation_prompt=add_generation_prompt,
                           bos_token=self.bos_token or "", eos_token=self.eos_token)

    def with_chat_template(self, name_or_source: str) -> TextTokenizer:
        """The same tokenizer with another chat template; checks that its special tokens exist."""
        source = chat.template_source(name_or_source)
        name = name_or_source if name_or_source in chat.TEMPLATES else None
        missing = [t for t in chat.SPECIAL_TOKENS.get(name or "", ()) if self.token_id(t) is None]
        if missing:
            raise ValueError(f"chat template {name_or_source!r} needs special tokens {missing} that this "
                             "tokenizer lacks; pick the template the tokenizer was built for")
        bos = self.bos_token
        if name == "llama3":
            bos = "<|begin_of_text|>"
        return TextTokenizer(self.backend, eos_token=self.eos_token, bos_token=bos,
                             pad_token=self.pad_token, chat_template=source, template_name=name)

    @property
    def end_of_turn_id(self) -> int:
        """The token that closes an assistant turn (the stop token for chat generation)."""
        token = chat.END_OF_TURN.get(self.template_name or "")
        if token is None and self.chat_template and "<|im_end|>" in self.chat_template:
            token = "<|im_end|>"
        found = self.token_id(token) if token else None
        return found if found is not None else self.eos_id

    def stop_ids(self) -> tuple[int, ...]:
        return tuple(dict.fromkeys((self.end_of_turn_id, self.eos_id)))

    # --- files --------------------------------------------------------------------------------

    def save(self, folder: str) -> None:
        """Write ``tokenizer.json`` and ``tokenizer_config.json`` (HF layout) into ``folder``."""
        from llm_core.artifacts import atomic_open, join, write_json

        with atomic_open(join(folder, "tokenizer.json"), "w", encoding="utf-8") as handle:
            handle.write(self.backend.to_str())
        config = {"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": self.eos_token,
                  "bos_token": self.bos_token, "pad_token": self.pad_token or self.eos_token,
                  "clean_up_tokenization_spaces": False, "model_max_length": 1_000_000}
        if self.chat_template:
            config["chat_template"] = self.chat_template
        if self.template_name:
            config["llmt_chat_template"] = self.template_name
        write_json(join(folder, "tokenizer_config.json"), config)

    @classmethod
    def load(cls, folder: str) -> TextTokenizer:
        from tokenizers import Tokenizer

        from llm_core.artifacts import exists, join

        path = join(folder, "tokenizer.json")
        if not exists(path):
            raise FileNotFoundError(f"{path}: no tokenizer.json; point at a checkpoint folder "
                                    "written by a pretrain / sft stage or an HF model folder")
        with fsspec.open(path, "r", encoding="utf-8") as handle:
            backend = Tokenizer.from_str(handle.read())
        config: dict[str, Any] = {}
        config_path = join(folder, "tokenizer_config.json")
        if exists(config_path):
            with fsspec.open(config_path, "r", encoding="utf-8") as handle:
                config = json.load(handle)
        return cls(backend, eos_token=_token_text(config.get("eos_token")) or EOS_TOKEN,
                   bos_token=_token_text(config.get("bos_token")),
                   pad_token=_token_text(config.get("pad_token")),
                   chat_template=config.get("chat_template"),
                   template_name=config.get("llmt_chat_template"))


def _token_text(value: Any) -> str | None:
    """HF configs store a special token as a string or as ``{"content": ...}``."""
    if isinstance(value, dict):
        return value.get("content")
    return value


def train_bpe(texts: Iterable[str], vocab_size: int, *, min_frequency: int = 2) -> TextTokenizer:
    """Train a byte-level BPE (GPT-2 style) with the reserved special tokens first in the vocab."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                  special_tokens=list(RESERVED_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    backend.train_from_iterator(texts, trainer=trainer)
    return TextTokenizer(backend, eos_token=EOS_TOKEN, pad_token=PAD_TOKEN)
