"""Evaluation: metrics of generated against real frames (metrics.py) and the `eval` protocol over
a folder of face videos (protocol.py)."""
