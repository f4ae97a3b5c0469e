"""Deliver: results and forwarded originals to destinations by C-STORE, retried, dead-lettered, never lost."""
