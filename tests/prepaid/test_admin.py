import pytest
from django.contrib import admin
from django.core.management import call_command
from django.urls import reverse

from prepaid.audit.models import AuditLog

pytestmark = pytest.mark.django_db


@pytest.fixture
def superuser_client(client, django_user_model):
    call_command("seed_demo")
    client.force_login(django_user_model.objects.get(username="admin"))
    return client


def test_every_model_of_ours_is_registered():
    ours = {
        "accounts",
        "meters",
        "billing",
        "audit",
        "tariffs",
        "payments",
        "reports",
        "notifications",
    }
    from django.apps import apps

    models = {m for m in apps.get_models() if m._meta.app_label in ours}
    assert models - set(admin.site._registry) == set()


def test_every_admin_list_and_detail_page_renders(superuser_client):
    for model, model_admin in admin.site._registry.items():
        opts = model._meta
        changelist = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
        assert superuser_client.get(changelist).status_code == 200, changelist
        first = model_admin.get_queryset(None).first() if opts.app_label != "auth" else None
        if first is not None:
            change = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[first.pk])
            assert superuser_client.get(change).status_code == 200, change


def test_audit_rows_are_read_only_in_the_admin(superuser_client):
    row = AuditLog.objects.first()
    url = reverse("admin:audit_auditlog_change", args=[row.pk])
    superuser_client.post(url, {"reason": "rewritten"})
    row.refresh_from_db()
    assert row.reason != "rewritten"
    assert (
        superuser_client.post(
            reverse("admin:audit_auditlog_delete", args=[row.pk]), {"post": "yes"}
        ).status_code
        == 403
    )
