from dataclasses import dataclass

from django.db.models import QuerySet

from accounts.models import Tenant
from notifications.models import Channel, ChannelPreference, Notification
from notifications.sms import phone_number


@dataclass(frozen=True)
class Route:
    channel: str
    recipient: str


def channel_preference(*, tenant: Tenant) -> ChannelPreference:
    """The channels the tenant chose; every channel on (unsaved) when they never chose."""
    try:
        return tenant.notification_channels
    except ChannelPreference.DoesNotExist:
        return ChannelPreference(tenant=tenant)


def routes(*, tenant: Tenant, preference: ChannelPreference) -> list[Route]:
    """Where the tenant is told: each chosen channel they can be reached on, in a fixed order."""
    addresses = {
        Channel.EMAIL: tenant.email,
        Channel.SMS: phone_number(tenant.phone),
        # The portal is where the tenant reads them: always reachable.
        Channel.PORTAL: "",
    }
    return [
        Route(channel, recipient)
        for channel, recipient in addresses.items()
        if preference.chosen(channel) and (recipient or channel == Channel.PORTAL)
    ]


def portal_messages(*, tenant_user) -> QuerySet[Notification]:
    """The portal messages of every tenancy this login stands for, newest first."""
    return Notification.objects.filter(channel=Channel.PORTAL, tenant__user=tenant_user).order_by(
        "-created_at", "-id"
    )
