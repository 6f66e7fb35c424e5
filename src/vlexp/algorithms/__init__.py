"""Algorithms: what each one declares (the algorithm seam) and the glue around TRL's trainers
(GRPO family), vlexp's own trainers (PPO, reward model) and the video carrier."""
