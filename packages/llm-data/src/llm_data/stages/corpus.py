"""``noisy_wikipedia``: a real noisy corpus, Wikipedia pages (raw wikitext) and news plus injected noise.

By default it reads the samples the ``gensim`` package ships (a MediaWiki XML dump of 106 articles
and 300 news articles); any other MediaWiki dump can be named instead. Output: JSONL shards under
``documents/`` with ``metadata.noise`` recording the truth.
"""

from __future__ import annotations

from pydantic import Field

from llm_core.builtins.jsonl import JsonlWriter
from llm_core.config import Config
from llm_core.data_io import RejectLog
from llm_core.stage import StageContext
from llm_core.types import Document, StageResult
from llm_data.io.readers import MediaWikiReader
from llm_data.noise import add_noise

GENSIM_WIKI = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
GENSIM_NEWS = "lee_background.cor"


class NoisyWikipediaConfig(Config):
    dump: str | None = Field(None, description="MediaWiki XML dump; None: the sample shipped in gensim")
    news: str | None = Field(None, description="one news article a line; None: gensim's lee_background.cor")
    include_news: bool = True
    noise_fraction: float = Field(0.3, ge=0, lt=1, description="share of injected noisy documents")
    pii_fraction: float = Field(0.1, ge=0, le=1, description="share of clean documents given planted PII")
    num_shards: int = Field(4, ge=1)

    def required_modules(self) -> dict[str, str]:
        uses_gensim = self.dump is None or (self.include_news and self.news is None)
        return {"gensim": "pip install gensim (or give 'dump' and 'news' paths)"} if uses_gensim else {}


def _gensim_file(name: str) -> str:
    try:
        from gensim.test.utils import datapath
    except ImportError as exc:
        raise ImportError(f"the default corpus is gensim's sample {name}: install gensim or set the path") from exc
    return datapath(name)


def read_news(path: str) -> list[Document]:
    with open(path, encoding="utf-8", errors="replace") as handle:
        return [Document(f"news-{i:04d}", line.strip(), {"url": f"https://news.example.com/lee/{i}",
                                                         "source": "news"})
                for i, line in enumerate(handle) if line.strip()]


class NoisyWikipediaStage:
    def __init__(self, config: NoisyWikipediaConfig):
        self.config = config

    def run(self, ctx: StageContext) -> StageResult:
        rejects = RejectLog()
        docs = list(MediaWikiReader().read(self.config.dump or _gensim_file(GENSIM_WIKI), rejects))
        if self.config.include_news:
            docs += read_news(self.config.news or _gensim_file(GENSIM_NEWS))
        docs = add_noise(docs, self.config.noise_fraction, self.config.pii_fraction, ctx.seed)
        writer = JsonlWriter()
        for shard in range(self.config.num_shards):
            writer.write(ctx.path("documents", f"part-{shard:05d}.jsonl.gz"), docs[shard::self.config.num_shards])
        rejects.write(ctx.path("rejects.jsonl"))
        noisy = sum(1 for d in docs if d.metadata["noise"] != "none")
        metrics = {"docs": len(docs), "noisy": noisy, "clean": len(docs) - noisy, "rejects": len(rejects)}
        ctx.log_metrics(metrics)
        return StageResult(metrics=metrics, artifacts={"documents": ctx.path("documents")})
