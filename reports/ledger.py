from reports.base import Report

REPORTS: list[Report] = []
