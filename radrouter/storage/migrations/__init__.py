"""Alembic migrations of the index (``radrouter db upgrade``; new ones with ``radrouter db revision``)."""
