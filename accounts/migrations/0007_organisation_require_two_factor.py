from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0006_property_carbon_factor"),
    ]

    operations = [
        migrations.AddField(
            model_name="organisation",
            name="require_two_factor",
            field=models.BooleanField(default=False),
        ),
    ]
