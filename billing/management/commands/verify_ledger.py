from django.core.management.base import BaseCommand, CommandError

from billing.verification import ledger_violations


class Command(BaseCommand):
    help = "Check every ledger invariant over all the data; exit non-zero on any violation."

    def add_arguments(self, parser):
        parser.add_argument("--limit", type=int, default=20, help="Violations shown per check.")

    def handle(self, *args, limit: int, **options):
        failed = 0
        for name, violations in ledger_violations().items():
            if not violations:
                self.stdout.write(f"ok    {name}")
                continue
            failed += len(violations)
            self.stdout.write(self.style.ERROR(f"FAIL  {name}: {len(violations)} violation(s)"))
            for violation in violations[:limit]:
                self.stdout.write(f"        {violation}")
        if failed:
            raise CommandError(f"The ledger has {failed} violation(s).")
        self.stdout.write(self.style.SUCCESS("The ledger is consistent."))
