"""Preference optimization for llmt: DPO family losses, reward models, PPO, RLAIF, Constitutional AI."""
