"""The payment providers, each behind `base.PaymentProvider`, looked up by name."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from django.utils.module_loading import import_string

from payments.providers.base import PaymentProvider

PROVIDER_CLASSES = {
    "manual": "payments.providers.manual.ManualProvider",
    "sandbox": "payments.providers.sandbox.SandboxProvider",
    "stripe": "payments.providers.stripe.StripeProvider",
    "wechat": "payments.providers.wechat.WeChatPayProvider",
    "alipay": "payments.providers.alipay.AlipayProvider",
}


def provider_class(name: str) -> type[PaymentProvider]:
    return import_string(PROVIDER_CLASSES[name])


def build_provider(
    name: str, settings: Mapping[str, Any], secret: Callable[[str], str]
) -> PaymentProvider:
    return provider_class(name)(settings, secret)
