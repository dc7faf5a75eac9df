import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "prepaid.settings")

app = Celery("prepaid")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
