"""Long context for llmt: RoPE scalings, ring attention, long-document data and evaluation."""
