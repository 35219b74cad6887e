"""Applications over the model contract: each asks the model what it can do (STYLE.md #2)."""

# timesteps of a diffusion model's bound estimate in the Bayes classifier (K + 1 network passes per image and class)
DEFAULT_BOUND_STEPS = 50
