from django.db import migrations


def load_builtin_profiles(apps, schema_editor):
    """The shipped meter models, as data: SDM120, SDM630, Acrel DDSY1352 and the simulator."""
    from meters.services import builtin_profiles_sync

    builtin_profiles_sync(model=apps.get_model("meters", "MeterProfile"))


class Migration(migrations.Migration):
    dependencies = [("meters", "0003_relaycommand_meter_last_seen_at_meter_missed_polls_and_more")]

    operations = [migrations.RunPython(load_builtin_profiles, migrations.RunPython.noop)]
