"""The SMFD lab web app (Gradio)."""
