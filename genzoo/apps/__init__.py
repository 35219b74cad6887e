"""Applications over the model contract (docs/python-api.md): each asks the model what it can do."""

# timesteps of a diffusion model's bound estimate in the Bayes classifier (K + 1 network passes per image and class)
DEFAULT_BOUND_STEPS = 50
# how the Bayes classifier makes a binarized model's inputs from 8-bit images: a Bernoulli draw, or the threshold at 1/2
BINARIZE = ("sample", "threshold")
