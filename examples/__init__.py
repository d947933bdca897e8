"""Runnable examples of Stellar Memory; ``python -m examples.demo`` is the main job."""
