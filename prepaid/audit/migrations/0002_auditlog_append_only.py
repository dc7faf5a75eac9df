from django.db import migrations

from prepaid.append_only import AppendOnly


class Migration(migrations.Migration):
    dependencies = [("audit", "0001_initial")]

    operations = [AppendOnly("AuditLog")]
