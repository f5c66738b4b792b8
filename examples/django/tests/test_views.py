"""The example's own tests (TEST_COMMAND runs them with the app's requirements)."""

import json
import os

import django
from django.test import Client

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
django.setup()


def test_index_and_health_answer_the_version():
    client = Client()
    for path in ("/", "/health"):
        answer = client.get(path)
        assert answer.status_code == 200
        assert json.loads(answer.content)["version"]


def test_the_task_reports_its_version():
    from jobs.tasks import work

    assert work.run(0)["version"] == django.conf.settings.VERSION
