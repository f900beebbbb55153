"""Importing nanotron 0.4 as released: the one place that works around what stops it from loading.

Two things stand between ``pip install nanotron==0.4`` and ``import nanotron.models.llama``:

1. A circular import. ``nanotron/logging.py`` imports ``LoggingArgs`` from ``nanotron.config.config``,
   which imports ``nanotron.logging`` back (upstream issues #191 and #235, fixed on GitHub but never
   republished). ``LoggingArgs`` is used there only in a type annotation, so :func:`load_nanotron`
   preloads ``nanotron.logging`` from its own source with that one import replaced by a placeholder
   name, then imports ``nanotron.config`` normally.
2. ``flash_attn``, a CUDA source build that does not install here. When (and only when) the real
   package is absent, the pure-torch stand-in of :mod:`llm_nanotron.flash_attn_standin` provides
   exactly the symbols 0.4 imports.

Both steps check what they patch: another nanotron version, or a ``logging.py`` without the
patched line, is an error that says so, rather than a silent import of something unknown.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.metadata
import importlib.util
import sys
import warnings
from types import ModuleType

SUPPORTED_VERSION = "0.4"
CIRCULAR_IMPORT = "from nanotron.config.config import LoggingArgs"
# The patched module keeps the name defined, for the annotation of ``set_ranks_logging_level``.
PLACEHOLDER = "LoggingArgs = 'LoggingArgs'  # llmt: the circular import of nanotron 0.4, see llm_nanotron.compat"


class NanotronImportError(ImportError):
    """nanotron is missing, or is not the release this compatibility layer was written for."""


def installed_version() -> str:
    try:
        return importlib.metadata.version("nanotron")
    except importlib.metadata.PackageNotFoundError:
        raise NanotronImportError("the nanotron engine needs the Python package nanotron==0.4: "
                                  "pip install 'nanotron==0.4' (or uv sync in the llmt workspace)") from None


def check_version() -> None:
    version = installed_version()
    if version != SUPPORTED_VERSION:
        raise NanotronImportError(
            f"nanotron {version} is installed; llm_nanotron.compat patches nanotron {SUPPORTED_VERSION} "
            "(its circular import and flash_attn imports). Install nanotron==0.4, or check whether this "
            "release still needs the patch and update llm_nanotron/compat.py")


def load_nanotron() -> ModuleType:
    """Import nanotron 0.4 with its circular import broken and ``flash_attn`` stood in for if absent.

    Idempotent; returns ``nanotron.models.llama``. Raises :class:`NanotronImportError` for any other
    version, or when the line it patches is not where 0.4 has it."""
    if "nanotron.models.llama" in sys.modules:
        return sys.modules["nanotron.models.llama"]
    check_version()
    if "nanotron.logging" not in sys.modules:
        _preload_logging()
    install_flash_attn_standin()
    with warnings.catch_warnings():  # nanotron 0.4 scripts a helper with torch.jit, which torch deprecates
        warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)
        importlib.import_module("nanotron.config")
        return importlib.import_module("nanotron.models.llama")


def patched_logging_source(source: str) -> str:
    """``nanotron/logging.py`` with its circular import replaced (exactly one line, or an error)."""
    lines = source.splitlines(keepends=True)
    hits = [i for i, line in enumerate(lines) if line.strip() == CIRCULAR_IMPORT]
    if len(hits) != 1:
        raise NanotronImportError(
            f"nanotron/logging.py does not contain the line {CIRCULAR_IMPORT!r} exactly once (found "
            f"{len(hits)}); this is not the nanotron 0.4 that llm_nanotron.compat patches")
    lines[hits[0]] = PLACEHOLDER + "\n"
    return "".join(lines)


def _preload_logging() -> None:
    spec = importlib.util.find_spec("nanotron.logging")
    if spec is None or spec.origin is None:
        raise NanotronImportError("nanotron is installed without nanotron/logging.py")
    with open(spec.origin, encoding="utf-8") as handle:
        source = patched_logging_source(handle.read())
    module = importlib.util.module_from_spec(spec)
    sys.modules["nanotron.logging"] = module
    try:
        exec(compile(source, spec.origin, "exec"), module.__dict__)  # noqa: S102 - nanotron's own source
    except BaseException:
        del sys.modules["nanotron.logging"]
        raise


def flash_attn_is_installed() -> bool:
    module = sys.modules.get("flash_attn")
    if module is not None:
        return not getattr(module, "LLMT_STANDIN", False)
    return importlib.util.find_spec("flash_attn") is not None


def install_flash_attn_standin() -> bool:
    """Register the pure-torch ``flash_attn`` modules unless the real package is installed.
    Returns True when the stand-in is (now) in use."""
    if flash_attn_is_installed():
        return False
    if "flash_attn" in sys.modules:
        return True
    from llm_nanotron import flash_attn_standin as impl

    names = {
        "flash_attn": {"bert_padding": None},
        "flash_attn.bert_padding": {"unpad_input": impl.unpad_input, "pad_input": impl.pad_input},
        "flash_attn.flash_attn_interface": {"flash_attn_varlen_func": impl.flash_attn_varlen_func,
                                            "flash_attn_with_kvcache": impl.flash_attn_with_kvcache},
        "flash_attn.layers": {},
        "flash_attn.layers.rotary": {"RotaryEmbedding": impl.RotaryEmbedding},
        "flash_attn.ops": {},
        "flash_attn.ops.triton": {},
        "flash_attn.ops.triton.layer_norm": {"layer_norm_fn": impl.layer_norm_fn},
    }
    modules = {}
    for name, symbols in names.items():
        module = ModuleType(name, "pure-torch stand-in for flash_attn (llm_nanotron.flash_attn_standin)")
        module.LLMT_STANDIN = True
        module.__path__ = []  # a package, so that its submodules import
        # A spec without a loader: importlib.util.find_spec (transformers probes flash_attn with it)
        # answers instead of raising; no distribution metadata exists, so probes still see no flash-attn.
        module.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)
        module.__dict__.update({k: v for k, v in symbols.items() if v is not None})
        modules[name] = module
    for name, module in modules.items():  # parents point at their children, as after a real import
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(modules[parent], child, module)
    sys.modules.update(modules)
    return True
