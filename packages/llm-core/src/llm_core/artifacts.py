"""The run's artifact store over fsspec: stage folders, atomic writes, manifests, metrics.

Layout under a run root (a local path or any fsspec URI)::

    <root>/run.json                  the resolved recipe and the stage order
    <root>/<stage>/manifest.json     config hash, input fingerprints, versions, status, wall time
    <root>/<stage>/metrics.jsonl     one JSON object per line
    <root>/<stage>/_shards/<id>.json completion marker of one shard (sharded stages)
    <root>/<stage>/...               the stage's own artifacts
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import fsspec
from fsspec.core import url_to_fs

TMP_MARK = ".tmp-"


def join(base: str, *parts: str) -> str:
    out = base.rstrip("/")
    for part in parts:
        out = f"{out}/{part.strip('/')}"
    return out


def has_scheme(ref: str) -> bool:
    return "://" in ref


def local_path(uri: str) -> str:
    """``file://`` URIs as the local path they name, percent-escapes decoded (``%20`` is a space:
    fsspec would otherwise create a folder literally named ``with%20space``)."""
    if uri.startswith("file://"):
        return urllib.parse.unquote(urllib.parse.urlparse(uri).path)
    return uri


def normalize_root(root: str) -> str:
    """Local paths (and ``file://`` URIs) become absolute paths, so that worker processes agree;
    other URIs are kept as given."""
    root = local_path(root)
    return root if has_scheme(root) else str(Path(root).expanduser().resolve())


@contextlib.contextmanager
def atomic_open(uri: str, mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """Write to a temporary sibling, then rename over ``uri``: readers never see half a file.

    ``compression="infer"`` picks gzip / zstd from the final name, not the temporary one.
    """
    fs, path = url_to_fs(uri)
    tmp = f"{path}{TMP_MARK}{uuid.uuid4().hex[:12]}"
    parent = path.rsplit("/", 1)[0]
    if parent:
        fs.makedirs(parent, exist_ok=True)
    compression = kwargs.pop("compression", None)
    if compression == "infer":
        compression = fsspec.utils.infer_compression(path)
    try:
        with fs.open(tmp, mode, compression=compression, **kwargs) as handle:
            yield handle
        fs.mv(tmp, path)
    except BaseException:
        with contextlib.suppress(Exception):
            fs.rm(tmp)
        raise



def write_json(uri: str, obj: Any) -> None:
    with atomic_open(uri, "w", encoding="utf-8") as handle:
        json.dump(obj, handle, indent=2, default=str)  # key order kept: a stage lists its headline first


def read_json(uri: str) -> Any:
    with fsspec.open(uri, "r", encoding="utf-8") as handle:
        return json.load(handle)


def exists(uri: str) -> bool:
    fs, path = url_to_fs(uri)
    return fs.exists(path)


def remove_tree(uri: str) -> None:
    fs, path = url_to_fs(uri)
    if fs.exists(path):
        fs.rm(path, recursive=True)


def remove_temporaries(uri: str) -> int:
    """Delete temporary files a killed run left under ``uri``; returns how many."""
    fs, path = url_to_fs(uri)
    if not fs.exists(path):
        return 0
    stale = [p for p in fs.find(path) if TMP_MARK in p.rsplit("/", 1)[-1]]
    for p in stale:
        fs.rm(p)
    return len(stale)


def fingerprint(obj: Any) -> str:
    """A stable short hash of JSON-able data."""
    blob = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def path_fingerprint(uri: str) -> str:
    """Fingerprint of an external input from its listing: names, sizes and modification stamps.

    Cheap for any size of input (no content is read), and changes whenever a file is replaced.
    """
    fs, path = url_to_fs(uri)
    if not fs.exists(path):
        return "missing"
    if fs.isdir(path):
        infos = sorted(fs.find(path, detail=True).values(), key=lambda i: i["name"])
    else:
        infos = [fs.info(path)]
    keys = ("name", "size", "mtime", "ETag", "etag", "md5", "created", "LastModified")
    return fingerprint([{k: i.get(k) for k in keys if k in i} for i in infos])


@dataclass(frozen=True)
class InputRef:
    """An input reference resolved against a recipe: a stage's output (and a sub-path) or a URI."""

    ref: str
    stage: str | None
    subpath: str
    uri: str  # for a stage ref: filled in by the runner once the root is known

    def exists(self) -> bool:
        return self.stage is not None or exists(self.uri)


def resolve_input_ref(ref: str, stage_names: list[str], base_dir: str = ".") -> InputRef:
    """``"clean"`` or ``"clean/kept"`` name a stage's output; anything else is a path or URI."""
    ref = local_path(ref)
    head, _, rest = ref.partition("/")
    if not has_scheme(ref) and head in stage_names:
        return InputRef(ref, head, rest, "")
    if has_scheme(ref) or os.path.isabs(ref):
        return InputRef(ref, None, "", ref)
    return InputRef(ref, None, "", str((Path(base_dir) / ref).resolve()))


class RunStore:
    """Where a run's stages keep their outputs and bookkeeping."""

    def __init__(self, root: str):
        self.root = normalize_root(root)

    def stage_dir(self, stage: str) -> str:
        return join(self.root, stage)

    def manifest_uri(self, stage: str) -> str:
        return join(self.root, stage, "manifest.json")

    def read_manifest(self, stage: str) -> dict[str, Any] | None:
        uri = self.manifest_uri(stage)
        return read_json(uri) if exists(uri) else None

    def write_manifest(self, stage: str, manifest: dict[str, Any]) -> None:
        write_json(self.manifest_uri(stage), manifest)

    def metrics_uri(self, stage: str) -> str:
        return join(self.root, stage, "metrics.jsonl")

    def append_metrics(self, stage: str, record: dict[str, Any]) -> None:
        """Append one JSON line; on stores without append (object stores) rewrite atomically."""
        uri = self.metrics_uri(stage)
        line = json.dumps(record, default=str) + "\n"
        fs, path = url_to_fs(uri)
        fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        try:
            with fs.open(path, "a", encoding="utf-8") as handle:
                handle.write(line)
        except (NotImplementedError, ValueError):
            previous = fs.cat_file(path).decode() if fs.exists(path) else ""
            with atomic_open(uri, "w", encoding="utf-8") as handle:
                handle.write(previous + line)

    def read_metrics(self, stage: str) -> list[dict[str, Any]]:
        uri = self.metrics_uri(stage)
        if not exists(uri):
            return []
        with fsspec.open(uri, "r", encoding="utf-8") as handle:
            return [json.loads(line) for line in handle if line.strip()]

    def drop_metrics_from(self, stage: str, step: int) -> int:
        """Remove records of ``step`` and later (a resumed loop logs them again); returns how many."""
        records = self.read_metrics(stage)
        kept = [r for r in records if not (isinstance(r.get("step"), int) and r["step"] >= step)]
        if len(kept) < len(records):
            with atomic_open(self.metrics_uri(stage), "w", encoding="utf-8") as handle:
                handle.writelines(json.dumps(r, default=str) + "\n" for r in kept)
        return len(records) - len(kept)

    def stages_on_disk(self) -> list[str]:
        """Stage folders that hold a manifest, in the order run.json gives (else by name)."""
        run = self.read_run()
        order = run.get("order", []) if run else []
        fs, path = url_to_fs(self.root)
        if not fs.exists(path):
            return []
        found = {p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(path, detail=False)
                 if fs.exists(f"{p.rstrip('/')}/manifest.json")}
        return [s for s in order if s in found] + sorted(found - set(order))

    def read_run(self) -> dict[str, Any] | None:
        uri = join(self.root, "run.json")
        return read_json(uri) if exists(uri) else None

    def write_run(self, info: dict[str, Any]) -> None:
        write_json(join(self.root, "run.json"), info)
