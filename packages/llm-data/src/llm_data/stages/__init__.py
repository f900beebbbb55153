"""Stages of llm-data: corpus preparation, tokenization, quality classifier, mixing, DoReMi."""
