from django.conf import settings
from django.core.management.base import BaseCommand

from accounts.models import Organisation
from prepaid.demo import demo_exists, demo_logins, demo_seed


class Command(BaseCommand):
    help = "Create the demo organisation, properties, units, tenants, meters and logins."

    def add_arguments(self, parser):
        parser.add_argument(
            "--if-empty",
            action="store_true",
            help="Seed only when the database holds no organisation at all.",
        )

    def handle(self, *args, if_empty: bool, **options):
        if if_empty and Organisation.objects.exists() and not demo_exists():
            self.stdout.write("The database already holds data; the demo was not seeded.")
            return
        organisation = demo_seed()
        self.stdout.write(self.style.SUCCESS(f"Demo organisation ready: {organisation.name}"))
        self.stdout.write(f"Open {settings.SITE_URL}/ and sign in with one of these:")
        for login in demo_logins():
            self.stdout.write(f"  {login.username:<11} {login.password}   {login.what}")
        self.stdout.write(
            f"Admin: {settings.SITE_URL}/admin/   API docs: {settings.SITE_URL}/api/docs/"
        )
