"""Low-precision training: FP8 with per-tile scaling, OCP MX formats, QAT (see the README)."""
