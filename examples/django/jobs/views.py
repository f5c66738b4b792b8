"""The example's views: version, health, a task enqueued and its result, notes and uploads."""

from celery.result import AsyncResult
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.http import Http404, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from .models import Note
from .tasks import work


def index(request):
    """Which release answers."""
    return JsonResponse({"app": "hello-django", "version": settings.VERSION})


def health(request):
    """200 while the app can serve (needs neither the database nor the broker)."""
    return JsonResponse({"ok": True, "version": settings.VERSION})


def enqueue(request):
    """Enqueue `work` for ?seconds= (default 1), or until the media file ?until= exists."""
    job = work.delay(float(request.GET.get("seconds", "1")), request.GET.get("until", ""))
    return JsonResponse({"id": job.id})


def result(request, task_id):
    """A task's state and, once it finished, its result."""
    job = AsyncResult(task_id)
    answer = {"id": task_id, "state": job.state}
    if job.successful():
        answer["result"] = job.result
    return JsonResponse(answer)


@csrf_exempt
def notes(request):
    """POST text= adds a note; GET lists them."""
    if request.method == "POST":
        Note.objects.create(text=request.POST["text"])
    return JsonResponse({"notes": [n.text for n in Note.objects.order_by("id")]})


@csrf_exempt
def upload(request):
    """POST name= and text=: store a media file (MEDIA_ROOT, a linked shared/ directory)."""
    name = default_storage.save(request.POST["name"], ContentFile(request.POST["text"]))
    return JsonResponse({"name": name})


def media(request, name):
    """An uploaded file's content."""
    if not default_storage.exists(name):
        raise Http404(name)
    with default_storage.open(name) as handle:
        return HttpResponse(handle.read(), content_type="text/plain")
