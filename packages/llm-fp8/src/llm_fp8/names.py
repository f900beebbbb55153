"""The names configs choose from (no torch here, so that configs and ``llmt describe`` stay light)."""

from __future__ import annotations

from typing import Literal

ElementName = Literal["e4m3", "e5m2", "e3m2", "e2m3", "e2m1"]  # MX element formats (OCP MX v1.0)
Fp8Name = Literal["e4m3", "e5m2"]  # torch.float8_e4m3fn, torch.float8_e5m2
Granularity = Literal["tensor", "row", "tile", "block"]  # what one FP8 scale covers (scaling.py)
