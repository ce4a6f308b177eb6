"""The web layer: the only part of Kefu that imports gradio."""
