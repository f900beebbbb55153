"""Embedded llmt engine."""
