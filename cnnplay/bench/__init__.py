"""python -m cnnplay.bench: speed figures as ratios measured in one run."""
