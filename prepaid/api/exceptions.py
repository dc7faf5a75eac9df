import logging

from django.core.exceptions import NON_FIELD_ERRORS
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

logger = logging.getLogger(__name__)


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The request conflicts with the current state; reload and try again."
    default_code = "conflict"


def exception_handler(exc, context) -> Response | None:
    """Services raise Django's ValidationError; the API answers those with 400 and field errors.

    A unique or check constraint that fires despite validation means a concurrent request won
    the race: that is a 409, not a 500.
    """
    if isinstance(exc, DjangoValidationError):
        if hasattr(exc, "error_dict"):
            detail = {
                ("non_field_errors" if name == NON_FIELD_ERRORS else name): messages
                for name, messages in exc.message_dict.items()
            }
        else:
            detail = {"non_field_errors": exc.messages}
        exc = exceptions.ValidationError(detail)
    elif isinstance(exc, IntegrityError):
        logger.info("Constraint conflict in %s: %s", context.get("view"), exc)
        exc = Conflict()
    return drf_exception_handler(exc, context)
