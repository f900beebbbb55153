"""Deduplication for pretraining corpora: exact, MinHash LSH with verification, SemDeDup."""
