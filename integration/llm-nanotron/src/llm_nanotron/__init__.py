"""nanotron engine adapter for llmt (see README.md)."""
