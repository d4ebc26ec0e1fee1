"""The YAML presets and experiment configs, shipped as package data (`sandbox.configs`)."""
