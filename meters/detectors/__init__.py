"""Theft, fault and loss detection over meter series (issue #11), as pure functions.

No ORM and no Django: each detector module takes series built by `series` and the property's
`Rules`, and returns `Finding`s, so the same code runs in `meters.detection` (the runner, on
the database's data) and in `bench/detection.py` (on labelled synthetic data).

- `series`: samples, consumption intervals (rollovers, gaps, replaced meters, estimated
  readings), consumption per hour or day, the relay's confirmed-open stretches.
- `bypass`: consumption while the relay is confirmed open.
- `tamper`: the meter's own tamper and reverse flags, reverse power and unapproved export.
- `spikes`: an hour far above the account's median for that hour of the week.
- `flatline`: no consumption for days on an occupied, supplied unit with credit.
- `overload`: power above the contracted limit for minutes on end.
- `losses`: a feeder meter against the sum of the meters it feeds, per day.

Times are POSIX seconds (floats) throughout; quantities are floats in the meter's unit (kWh or
m³). Detection compares and reports, it never charges: money stays with Decimal elsewhere.
"""
