"""LLM Math Sandbox: the mathematics behind language models as pure JAX functions."""
