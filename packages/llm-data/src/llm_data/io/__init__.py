"""Readers and writers: Parquet, text folders, HF datasets on disk, MediaWiki dumps, token shards."""
