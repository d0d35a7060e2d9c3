import os

# Never open real windows in tests; keep app data in a per-run folder.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
