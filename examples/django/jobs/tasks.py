"""The example's Celery task: work for a while, then say which release's code ran it."""

import os
import time

from celery import shared_task
from django.conf import settings
from django.core.files.storage import default_storage


@shared_task
def work(seconds: float, until: str = "") -> dict:
    """Work ``seconds`` (a long job; with ``until``, only until that media file exists),
    then return the code's VERSION and the times."""
    started = time.time()
    while time.time() < started + seconds:
        if until and default_storage.exists(until):
            break
        time.sleep(0.2)
    return {
        "version": settings.VERSION,
        "started": started,
        "finished": time.time(),
        "pid": os.getpid(),
    }
