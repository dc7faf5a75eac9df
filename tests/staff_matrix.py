"""How a dashboard URL appears in the generated access matrix (tests/prepaid/test_staff_matrix.py).

Each test package that adds dashboard URLs lists them in its own `staff_urls.py` module, as
`STAFF_URLS = {"namespace:name": StaffUrl(...)}`. The matrix fails for a dashboard URL without
an entry, so a new URL is covered the moment it is added.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from accounts.models import Property
from prepaid.scoping import Capability


def _no_body(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class StaffUrl:
    # Builds the object the URL addresses inside the given property and returns the URL's
    # kwargs. None for URLs that address no object (lists, the overview, search).
    kwargs: Callable[[Property], dict[str, Any]] | None = None
    # The capability a POST needs; None when the URL takes no POST.
    post: Capability | None = None
    # A body the POST would accept, so a role with the capability is not refused for lack of
    # data. It gets the URL's kwargs.
    post_data: Callable[[dict[str, Any]], dict[str, Any]] = field(default=_no_body)
    # False for URLs that only take POST.
    get: bool = True
    # The capability needed to open the page at all.
    read: Capability = Capability.VIEW
    # Query string for the GET (e.g. a required filter).
    query: dict[str, str] = field(default_factory=dict)
