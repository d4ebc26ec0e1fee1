"""Attention as graphs: capture (capture.py), Markov chains, rollout and flow (graphs.py), figures (report.py)."""
