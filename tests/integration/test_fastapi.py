"""The FastAPI example (examples/fastapi) on a real-systemd host: an ASGI app served by
uvicorn's worker under gunicorn (neither listed by the app: fabdeploy adds both at their
documented versions), deployed and redeployed with no failed request, and a custom worker class
no package installs refused before anything reaches the host."""

from __future__ import annotations

import socket
import time
import urllib.request
from collections.abc import Iterator

import pytest

from tasks.build import workers
from tests.integration.apps import write_fastapi
from tests.integration.test_deploy import PORT, Site, fresh_site, running_in

ASGI = "WORKER_CLASS=uvicorn_worker.UvicornWorker\nTEST_COMMAND=\nMAX_REQUESTS=200\nMAX_REQUESTS_JITTER=20\n"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with fresh_site(tmp_path_factory, "fastapi") as site:
        env_file = site.project / "config" / "staging.env"
        env_file.write_text(env_file.read_text() + ASGI)
        write_fastapi(site.project / "app", "1.0.0")
        yield site


def test_an_asgi_app_deploys_and_redeploys_with_no_failed_request(site: Site) -> None:
    site.fab("setup")
    site.fab("deploy")
    with urllib.request.urlopen(site.host.url(8000, "/"), timeout=10) as answer:
        assert answer.headers["server"] == "uvicorn"  # served by uvicorn's worker
        assert answer.status == 200
    assert site.get("/")["app"] == "hello-fastapi"
    conf = site.host.path("/etc/hello/gunicorn.conf.py").read_text()
    assert "worker_class = 'uvicorn_worker.UvicornWorker'" in conf
    site_packages = next(site.host.path("/srv/hello/current/.venv/lib").glob("python3*/site-packages"))  # fmt: skip
    for name, version in (workers.GUNICORN, workers.WORKER_PACKAGES["uvicorn_worker"]):
        assert (site_packages / f"{name.replace('-', '_')}-{version}.dist-info").is_dir(), name
    for version in ("1.1.0",):  # one looped redeploy (the next test covers a worker's stop)
        old, journal = site.master(), len(site.journal())
        write_fastapi(site.project / "app", version)
        with site.loop() as loop:
            site.fab("deploy")
        loop.report(f"FastAPI redeploy to {version}")
        assert loop.failures == [] and loop.ok > 20
        assert loop.versions[-3:] == [version] * 3
        assert site.master() != old and not running_in(site, old)
        site.tracked(journal)


def test_a_stopping_worker_answers_the_request_of_a_connection_it_accepted(site: Site) -> None:
    """uvicorn closes at once a connection it accepted but read nothing from yet when its worker
    stops (a switch, MAX_REQUESTS): the conf's hook makes it wait for that first request."""
    site.fab("deploy")  # nothing to deploy when the test before it ran; a deploy otherwise
    with socket.create_connection((site.host.address, PORT), timeout=10) as client:
        time.sleep(0.3)  # a worker accepts it
        workers = site.sh(f"ps -o pid= --ppid {site.master()}").split()
        site.sh(f"kill -TERM {' '.join(workers)}")  # each stops; the master starts new ones
        time.sleep(0.4)  # uvicorn notices within 0.1 s, then closed the connection
        client.sendall(b"GET / HTTP/1.1\r\nHost: hello\r\n\r\n")
        answer = b"".join(iter(lambda: client.recv(4096), b""))  # then the worker closes it
    assert answer.startswith(b"HTTP/1.1 200") and b"hello-fastapi" in answer, answer
    assert site.wait_serving()["app"] == "hello-fastapi"  # the master replaced its workers


def test_a_worker_class_no_package_provides_is_refused_before_any_host(site: Site) -> None:
    releases, served = site.releases(), site.get("/")["version"]
    env_file = site.project / "config" / "staging.env"
    text = env_file.read_text().replace("WORKER_CLASS=uvicorn_worker.UvicornWorker", "WORKER_CLASS=fastworkers.Worker")  # fmt: skip
    env_file.write_text(text)
    write_fastapi(site.project / "app", "2.0.0", "fastapi\nuvicorn\ngunicorn\n")
    failed = site.fab("deploy", ok=False)
    assert "staging.env:" in failed.stderr and "WORKER_CLASS: fastworkers.Worker" in failed.stderr
    assert "add the package that provides it" in failed.stderr and "Traceback" not in failed.stderr
    assert "-> upload" not in failed.stdout
    assert site.releases() == releases and site.get("/")["version"] == served
