"""Concept panels (issue 9): kernel presets, weight sharing, receptive-field
growth, shift invariance and batch-norm calibration, as dock widgets."""
