"""Every report, by slug. Each subject's module lists its own reports in `REPORTS`."""

from reports import arrears, carbon, consumption, daily, debts, invoices, ledger, settlement
from reports.base import Report

REPORTS: dict[str, Report] = {
    report.slug: report
    for module in (daily, ledger, settlement, consumption, arrears, debts, invoices, carbon)
    for report in module.REPORTS
}
