"""Executors map a function over shards: ``local`` (process pool) and ``ray`` (optional extra)."""
