"""Evaluation for llmt."""
