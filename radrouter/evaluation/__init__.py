"""Scoring a model against reference results (``radrouter evaluate``).

Kept import-free so the CLI starts without loading scipy, scikit-learn and matplotlib.
"""
