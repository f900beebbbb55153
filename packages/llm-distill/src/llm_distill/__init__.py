"""Distillation: soft-label KD, hard-label KD from teacher samples, on-policy GKD and MiniLLM."""
