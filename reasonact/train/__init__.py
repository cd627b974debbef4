"""Training (notebooks 03-05): SFT for FRE and V-SFT, T-GRPO, the tiny perception base."""
