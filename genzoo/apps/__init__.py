"""Applications over the model contract: each asks the model what it can do (STYLE.md #2)."""
