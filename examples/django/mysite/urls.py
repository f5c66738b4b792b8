"""URL configuration for mysite."""

from django.contrib import admin
from django.urls import path
from jobs import views

urlpatterns = [
    path("", views.index),
    path("health", views.health),
    path("enqueue", views.enqueue),
    path("result/<str:task_id>", views.result),
    path("notes", views.notes),
    path("upload", views.upload),
    path("media/<str:name>", views.media),
    path("admin/", admin.site.urls),
]
