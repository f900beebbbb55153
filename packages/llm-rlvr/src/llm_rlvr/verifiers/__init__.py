"""Verifiers: math, code (sandboxed), format, weighted sums, length penalty, process rewards."""
