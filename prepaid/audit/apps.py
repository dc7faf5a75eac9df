from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "prepaid.audit"
    label = "audit"
    verbose_name = "Audit log"
