"""The SMFD lab web app (Gradio).

Importing any part of the app switches Gradio's telemetry and the Hugging Face hub client off
first: the app must work, and stay, offline.
"""

import os

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
