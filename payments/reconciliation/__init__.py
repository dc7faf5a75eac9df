"""Settlement reconciliation: the providers' files of what they took and paid, read into
normalised lines (one parser per format), matched against our payments, refunds and bank
top-ups, and the results kept for staff to resolve (docs/reconciliation.md).

- `lines` and the format modules (`stripe`, `wechat`, `alipay`, `bank`) read files; they do not
  touch the database.
- `matching` compares lines with what we recorded.
- `services` imports a file (a dry run, or the commit in one transaction), re-runs matching,
  resolves items and saves each source's settings, audited.
- `selectors` reads imports and items for the pages and reports.
"""
