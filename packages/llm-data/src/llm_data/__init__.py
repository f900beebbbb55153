"""Pretraining data quality, mixing and curricula for llmt."""
