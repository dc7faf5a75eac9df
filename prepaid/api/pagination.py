from rest_framework import pagination


class PageNumberPagination(pagination.PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


class CursorPagination(pagination.CursorPagination):
    """For large, append-mostly collections (audit log, readings, ledger)."""

    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000
    ordering = ("-created_at", "-id")

    @classmethod
    def with_ordering(cls, ordering: tuple[str, ...]) -> type["CursorPagination"]:
        """The same pagination over another stable ordering (for tables without created_at)."""
        return type(
            f"{cls.__name__}By{ordering[0].strip('-').title()}", (cls,), {"ordering": ordering}
        )
