from __future__ import annotations

from collections.abc import Mapping

from django.core.exceptions import ValidationError
from django.db import transaction

from accounts.models import Organisation
from payments.models import PROVIDER_SECRETS, Provider, ProviderConfig
from payments.secrets import seal, unseal
from prepaid.audit.services import audit_record


@transaction.atomic
def provider_config_save(
    *,
    organisation: Organisation,
    provider: str,
    actor,
    settings: Mapping[str, object] | None = None,
    secrets: Mapping[str, str] | None = None,
    enabled: bool = True,
) -> ProviderConfig:
    """Create or update an organisation's provider. Secrets left out, or given blank, keep their
    stored value, so a form never has to show a secret back to keep it."""
    if provider not in Provider.values:
        raise ValidationError({"provider": f"Choose one of {', '.join(Provider.values)}."})
    allowed = PROVIDER_SECRETS[provider]
    unknown = sorted(set(secrets or {}) - set(allowed))
    if unknown:
        raise ValidationError(
            {"secrets": f"{Provider(provider).label} takes no secret named {', '.join(unknown)}."}
        )
    config, created = ProviderConfig.objects.select_for_update().get_or_create(
        organisation=organisation, provider=provider
    )
    before = {"enabled": config.enabled, "settings": config.settings, **config.secrets_set()}
    changed_secrets = {name: value for name, value in (secrets or {}).items() if value.strip()}
    config.sealed_secrets = {
        **config.sealed_secrets,
        **{name: seal(value.strip()) for name, value in changed_secrets.items()},
    }
    if settings is not None:
        config.settings = dict(settings)
    config.enabled = enabled
    config.save()
    audit_record(
        organisation_id=organisation.pk,
        actor=actor,
        action="payments.provider.create" if created else "payments.provider.update",
        instance=config,
        before=None if created else before,
        # Which secrets changed, never their values.
        after={
            "enabled": config.enabled,
            "settings": config.settings,
            **config.secrets_set(),
            "secrets_changed": sorted(changed_secrets),
        },
    )
    return config


def provider_secret(*, config: ProviderConfig, name: str) -> str:
    """A secret in the clear, for the provider about to use it."""
    if name not in config.sealed_secrets:
        raise ValidationError(f"{config.get_provider_display()} has no {name} configured.")
    return unseal(config.sealed_secrets[name])
