from django.db import models


class Note(models.Model):
    """A line of text kept in the database (which must outlive every release)."""

    text = models.CharField(max_length=200)
    created = models.DateTimeField(auto_now_add=True)
