"""The project package; loads Celery with Django so tasks use its settings."""

from .celery import app as celery_app

__all__ = ("celery_app",)
