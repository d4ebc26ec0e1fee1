"""Floating point you can see: formats, rounding, error analysis of the LLM's operations, finite differences."""
