"""Dispatch: the Celery contract both sides import (task and queue names, the app), sending, recovery."""
