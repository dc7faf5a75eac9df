from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from meters.models import Reading
from prepaid.demo import demo_exists, demo_simulate, demo_simulator_state


class Command(BaseCommand):
    help = "Run the demo for the last N days: readings every 15 minutes, charges and top-ups."

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=7)
        parser.add_argument(
            "--if-empty", action="store_true", help="Only when no meter has reported yet."
        )

    def handle(self, *args, days: int, if_empty: bool, **options):
        if not demo_exists():
            raise CommandError("Seed the demo first: manage.py seed_demo")
        if if_empty and Reading.objects.exists():
            self.stdout.write("Meters have reported already; nothing simulated.")
            return
        counts = demo_simulate(days=days)
        self.stdout.write(
            f"Simulated {days} days: {counts['readings']} readings ({counts['charged']} charged), "
            f"{counts['standing']} standing charges, {counts['frozen_days']} property-days "
            f"frozen, {counts['topups']} top-ups."
        )
        if demo_simulator_state(settings.VAR_DIR):
            self.stdout.write("The simulated meters will carry on from there.")
