"""The one base every organisation-data endpoint uses: scoping, roles and public ids.

- The queryset is always the model's `for_scope(request.scope)`, so an object outside the caller's
  organisation or properties is a 404, exactly like a missing one.
- Writes need the view's capability. On a detail URL the object is looked up first, so a
  forbidden role sees 403 only on objects it can see.
- Objects are addressed by uuid, in URLs and in request bodies alike.
"""

import uuid
from typing import Any

from rest_framework import permissions, serializers, viewsets
from rest_framework.request import Request

from accounts.selectors import scope_for_user
from prepaid.scoping import Capability, Scope


class IsScopedStaff(permissions.BasePermission):
    message = "Only staff of an organisation can use this endpoint."

    def has_permission(self, request: Request, view) -> bool:
        scope = scope_for_user(user=request.user)
        if scope is None:
            return False
        request.scope = scope
        if request.method in permissions.SAFE_METHODS or view.detail:
            return True
        return self._capable(request, view)

    def has_object_permission(self, request: Request, view, obj) -> bool:
        if request.method in permissions.SAFE_METHODS:
            return True
        return self._capable(request, view)

    def _capable(self, request: Request, view) -> bool:
        capability = view.required_capability()
        if request.scope.can(capability):
            return True
        self.message = f"Your role cannot do this ({capability} is needed)."
        return False


class ScopedViewSet(viewsets.GenericViewSet):
    permission_classes = [permissions.IsAuthenticated, IsScopedStaff]
    lookup_field = "uuid"
    lookup_url_kwarg = "id"
    lookup_value_converter = "uuid"
    # What a role needs to write through this endpoint; actions may override it.
    write_capability: Capability = Capability.OPERATE
    action_capabilities: dict[str, Capability] = {}

    @property
    def scope(self) -> Scope:
        return self.request.scope

    def required_capability(self) -> Capability:
        return self.action_capabilities.get(self.action, self.write_capability)

    def get_queryset(self):
        return super().get_queryset().for_scope(self.scope)

    def validated(self, serializer_class, *, partial: bool = False) -> dict[str, Any]:
        serializer = serializer_class(
            data=self.request.data, partial=partial, context=self.get_serializer_context()
        )
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data


class ScopedRelatedField(serializers.SlugRelatedField):
    """A reference by uuid that only resolves inside the caller's scope.

    Objects outside it give the same "not found" error as missing ones.
    """

    default_error_messages = {
        "does_not_exist": "No such object: {value}.",
        "invalid": "Give the object's id (a UUID).",
    }

    def __init__(self, **kwargs):
        kwargs.setdefault("slug_field", "uuid")
        super().__init__(**kwargs)

    def get_queryset(self):
        return super().get_queryset().for_scope(self.context["request"].scope)

    def to_internal_value(self, data):
        try:
            uuid.UUID(str(data))
        except ValueError:
            self.fail("invalid")
        return super().to_internal_value(data)
