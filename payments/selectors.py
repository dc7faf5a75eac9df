from django.conf import settings
from django.urls import reverse

from payments.models import ProviderConfig


def provider_webhook_path(*, config: ProviderConfig) -> str:
    return reverse("payments:webhook", args=[config.provider, config.uuid])


def provider_webhook_url(*, config: ProviderConfig, base: str = "") -> str:
    """Where the provider posts its notifications: under PAYMENTS_PUBLIC_URL when set, else
    under `base` (the address the payer used) or SITE_URL."""
    root = settings.PAYMENTS_PUBLIC_URL or base or settings.SITE_URL
    return root.rstrip("/") + provider_webhook_path(config=config)
