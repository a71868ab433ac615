"""Integrations of liveportrait-jax with other tools (ComfyUI custom nodes: `integrations.comfyui`)."""
