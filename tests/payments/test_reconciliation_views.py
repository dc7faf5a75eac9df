"""The reconciliation pages: upload, dry run and commit; the files and their items; resolving
an item in its row; matching again; the settings. Owners change things; accountants read
everything and change nothing; staff limited to a property see its items only."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest
import time_machine
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from payments.models import ReconciliationItem, SettlementImport, SettlementProfile
from payments.reconciliation.services import settlement_import_commit
from prepaid.audit.models import AuditLog
from tests.payments.staff_urls_reconciliation import (
    STRIPE_HEADER,
    fixture,
    owner_scope,
    paid_intent,
    provider_config,
    stripe_import,
    stripe_line,
)

pytestmark = pytest.mark.django_db
Status = ReconciliationItem.Status


@pytest.fixture
def stripe(org_a):
    return provider_config(org_a, "stripe")


@pytest.fixture
def paid(account, stripe):
    with time_machine.travel(datetime(2026, 9, 1, 9, 10, tzinfo=UTC)):
        return paid_intent(account, stripe, "50.00", transaction_id="pi_paid")


def upload(client, data, *, name="balance.csv", source="stripe", encoding="auto"):
    return client.post(
        reverse("reports:reconciliation-upload"),
        {"source": source, "encoding": encoding, "file": SimpleUploadedFile(name, data)},
    )


def test_an_upload_is_checked_then_imported_on_commit(client, owner_a, paid):
    client.force_login(owner_a)
    response = upload(client, fixture("stripe_balance.csv", paid=paid.reference))
    assert response.status_code == 302
    assert response["Location"] == reverse("reports:reconciliation-review")
    review = client.get(response["Location"])
    assert review.status_code == 200
    assert "All 7 new lines are right." in review.content.decode()
    assert SettlementImport.objects.count() == 0
    digest = review.context["commit_form"].initial["digest"]
    done = client.post(reverse("reports:reconciliation-commit"), {"digest": digest})
    settlement_import = SettlementImport.objects.get()
    assert done["Location"] == reverse(
        "reports:reconciliation-file", kwargs={"import_id": settlement_import.uuid}
    )
    page = client.get(done["Location"])
    assert page.status_code == 200
    assert "The file is imported and matched." in page.content.decode()
    assert settlement_import.created_by == owner_a
    assert page.context["page"].paginator.count == 7
    assert client.session.get("reports.reconciliation.upload") is None


def test_the_dry_run_lists_every_bad_line_and_the_commit_refuses_it(client, owner_a, stripe):
    client.force_login(owner_a)
    upload(client, fixture("stripe_bad_amounts.csv"))
    review = client.get(reverse("reports:reconciliation-review"))
    body = review.content.decode()
    assert "4 problems: nothing can be imported until they are fixed." in body
    assert "“5O.00” is not an amount." in body
    assert "Import it" not in body
    digest = review.context["commit_form"].initial["digest"]
    refused = client.post(reverse("reports:reconciliation-commit"), {"digest": digest})
    assert refused.status_code == 400
    assert SettlementImport.objects.count() == 0


def test_a_wrong_format_and_a_wrong_encoding_are_explained(client, owner_a, stripe, org_a):
    provider_config(org_a, "alipay")
    client.force_login(owner_a)
    gbk = fixture("alipay_account_bill_gbk.csv", "gbk")
    upload(client, gbk, source="stripe")
    body = client.get(reverse("reports:reconciliation-review")).content.decode()
    assert "This is not a Stripe balance transactions export" in body
    assert "Alipay account bill" in body
    upload(client, gbk, source="alipay", encoding="utf-8")
    body = client.get(reverse("reports:reconciliation-review")).content.decode()
    assert "This line is not UTF-8 text." in body


def test_a_commit_of_a_file_other_than_the_one_checked_is_refused(client, owner_a, paid):
    client.force_login(owner_a)
    upload(client, fixture("stripe_balance.csv", paid=paid.reference))
    response = client.post(reverse("reports:reconciliation-commit"), {"digest": "0" * 64})
    assert response["Location"] == reverse("reports:reconciliation-review")
    assert SettlementImport.objects.count() == 0


def test_uploading_a_file_imported_before_changes_nothing(client, owner_a, paid):
    client.force_login(owner_a)
    data = fixture("stripe_balance.csv", paid=paid.reference)
    upload(client, data)
    digest = client.get(reverse("reports:reconciliation-review")).context["commit_form"].initial
    client.post(reverse("reports:reconciliation-commit"), digest)
    upload(client, data, name="the-same-again.csv")
    review = client.get(reverse("reports:reconciliation-review"))
    assert "This file was imported before." in review.content.decode()
    again = client.post(reverse("reports:reconciliation-commit"), digest, follow=True)
    assert "This file was imported before; nothing changed." in again.content.decode()
    assert SettlementImport.objects.count() == 1
    assert ReconciliationItem.objects.count() == 7


def _open_item(prop):
    settlement_import = stripe_import(prop, amount_off="1.00")
    return settlement_import, settlement_import.items.get(status=Status.AMOUNT_MISMATCH)


def test_an_item_is_resolved_in_its_row_with_htmx(client, owner_a, property_a1):
    _settlement_import, item = _open_item(property_a1)
    client.force_login(owner_a)
    url = reverse("reports:reconciliation-resolve", kwargs={"item_id": item.uuid})
    form_row = client.get(url, HTTP_HX_REQUEST="true")
    body = form_row.content.decode()
    assert body.lstrip().startswith("<tr")
    assert 'name="note"' in body
    # The row comes back with the error in it (htmx swaps only successful answers).
    blank = client.post(url, {"note": " "}, HTTP_HX_REQUEST="true")
    assert blank.status_code == 200
    assert "This field is required." in blank.content.decode()
    assert 'name="note"' in blank.content.decode()
    done = client.post(
        url, {"note": "Short-paid; tenant asked to pay 1.00"}, HTTP_HX_REQUEST="true"
    )
    body = done.content.decode()
    assert done.status_code == 200
    assert body.lstrip().startswith("<tr")
    assert "Short-paid; tenant asked to pay 1.00" in body
    assert "Resolved" in body
    item.refresh_from_db()
    assert item.resolved_by == owner_a
    entry = AuditLog.objects.get(action="reconciliation.resolve")
    assert (entry.actor, entry.object_id) == (owner_a, str(item.uuid))
    # A second click of the same form changes nothing.
    client.post(url, {"note": "Short-paid; tenant asked to pay 1.00"}, HTTP_HX_REQUEST="true")
    assert AuditLog.objects.filter(action="reconciliation.resolve").count() == 1


def test_without_htmx_resolving_goes_back_to_the_file(client, owner_a, property_a1):
    settlement_import, item = _open_item(property_a1)
    client.force_login(owner_a)
    url = reverse("reports:reconciliation-resolve", kwargs={"item_id": item.uuid})
    assert client.get(url).status_code == 200
    assert client.post(url, {"note": ""}).status_code == 400
    response = client.post(url, {"note": "Written off"})
    assert response["Location"] == reverse(
        "reports:reconciliation-file", kwargs={"import_id": settlement_import.uuid}
    )


def test_an_accountant_reads_everything_and_changes_nothing(client, accountant_a, property_a1):
    settlement_import, item = _open_item(property_a1)
    client.force_login(accountant_a)
    files = client.get(reverse("reports:reconciliation-files"))
    assert files.status_code == 200
    assert settlement_import.file_name in files.content.decode()
    page = client.get(reverse("reports:reconciliation-file",
                              kwargs={"import_id": settlement_import.uuid}))  # fmt: skip
    assert page.status_code == 200
    assert "Resolve…" not in page.content.decode()
    assert "Match again" not in page.content.decode()
    resolve = reverse("reports:reconciliation-resolve", kwargs={"item_id": item.uuid})
    assert client.post(resolve, {"note": "Mine now"}).status_code == 403
    rematch = reverse(
        "reports:reconciliation-rematch", kwargs={"import_id": settlement_import.uuid}
    )
    assert client.post(rematch).status_code == 403
    assert client.get(reverse("reports:reconciliation-upload")).status_code == 403
    settings_url = reverse("reports:reconciliation-settings")
    settings_page = client.get(settings_url, {"source": "stripe"})
    assert settings_page.status_code == 200
    assert settings_page.context["form"].fields["fee_percent"].disabled
    assert client.post(settings_url, {"source": "stripe", "fee_percent": "9"}).status_code == 403
    item.refresh_from_db()
    assert item.resolved_at is None
    assert not SettlementProfile.objects.exists()


def test_staff_limited_to_a_property_see_only_its_items(client, manager_a1, property_a1,
                                                        property_a2):  # fmt: skip
    mine, _ = _open_item(property_a1)
    theirs, _ = _open_item(property_a2)
    client.force_login(manager_a1)
    files = client.get(reverse("reports:reconciliation-files"))
    assert list(files.context["page"]) == [mine]
    page = client.get(reverse("reports:reconciliation-file", kwargs={"import_id": mine.uuid}))
    assert {item.property for item in page.context["page"]} == {property_a1}
    other = reverse("reports:reconciliation-file", kwargs={"import_id": theirs.uuid})
    assert client.get(other).status_code == 404


def test_matching_again_is_for_owners_and_audited(client, owner_a, property_a1):
    settlement_import, _item = _open_item(property_a1)
    client.force_login(owner_a)
    url = reverse("reports:reconciliation-rematch", kwargs={"import_id": settlement_import.uuid})
    response = client.post(url, follow=True)
    assert "Matched again: nothing changed." in response.content.decode()
    assert AuditLog.objects.filter(action="reconciliation.match").count() == 1


def test_the_items_filter_by_status(client, owner_a, property_a1):
    settlement_import, item = _open_item(property_a1)
    client.force_login(owner_a)
    url = reverse("reports:reconciliation-file", kwargs={"import_id": settlement_import.uuid})
    partial = client.get(url, {"status": "open"}, HTTP_HX_REQUEST="true")
    assert partial.content.decode().lstrip().startswith('<div id="items"')
    assert list(partial.context["page"]) == [item]
    assert list(client.get(url, {"status": "matched"}).context["page"]) == []


def test_an_owner_sets_up_the_bank_statements_columns(client, owner_a):
    client.force_login(owner_a)
    url = reverse("reports:reconciliation-settings")
    page = client.get(url)
    assert page.context["form"].initial["currency"] == "CNY"
    data = {
        "source": "bank", "date_column": "Date", "date_format": "%d.%m.%Y",
        "amount_column": "Paid in", "debit_column": "Paid out", "reference_column": "Reference",
        "description_column": "", "id_column": "", "balance_column": "", "currency": "cny",
        "time_zone": "Asia/Shanghai", "encoding": "gbk", "delimiter": ";",
        "decimal_separator": ",", "skip_rows": "2",
    }  # fmt: skip
    bad = client.post(url, {**data, "currency": "XXY", "debit_column": "date"})
    assert bad.status_code == 400
    response = client.post(url, data)
    assert response.status_code == 302
    profile = SettlementProfile.objects.get(source="bank")
    assert (profile.currency, profile.delimiter, profile.skip_rows) == ("CNY", ";", 2)
    assert AuditLog.objects.filter(action="reconciliation.settings.create").count() == 1


def test_an_owner_sets_the_fee_a_provider_is_expected_to_charge(client, owner_a):
    client.force_login(owner_a)
    url = reverse("reports:reconciliation-settings")
    client.post(url, {"source": "wechat", "fee_percent": "0.6", "fee_fixed": ""})
    profile = SettlementProfile.objects.get(source="wechat")
    assert (profile.fee_percent, profile.fee_fixed) == (Decimal("0.6"), None)
    assert client.post(url, {"source": "wechat", "fee_percent": "120"}).status_code == 400


def _unknown_lines(org, count, start=0):
    """An import of `count` Stripe lines we have no payment for."""
    data = STRIPE_HEADER + "".join(
        stripe_line(f"txn_{org.pk}_{start + n}", "10.00", f"nobody-{start + n}")
        for n in range(count)
    )
    return settlement_import_commit(
        scope=owner_scope(org), actor=None, source="stripe", data=data.encode(),
        file_name=f"file-{start}.csv",
    )[0]  # fmt: skip


def _matched_lines(account, config, count):
    """An import of `count` lines, each for one of our payments, every other one paid short."""
    intents = [paid_intent(account, config, "10.00") for _n in range(count)]
    data = STRIPE_HEADER + "".join(
        stripe_line(f"txn_{intent.reference}", "10.00" if n % 2 else "9.00", intent.reference)
        for n, intent in enumerate(intents)
    )
    return settlement_import_commit(
        scope=owner_scope(account.unit.property.organisation), actor=None, source="stripe",
        data=data.encode(), file_name="matched.csv",
    )[0]  # fmt: skip


@pytest.mark.parametrize("count", [3, 30])
def test_the_files_list_takes_the_same_queries_for_few_or_many(
    client, owner_a, org_a, stripe, count, django_assert_max_num_queries
):
    for n in range(count):
        _unknown_lines(org_a, 1, start=n)
    client.force_login(owner_a)
    with django_assert_max_num_queries(10):
        response = client.get(reverse("reports:reconciliation-files"))
    assert response.status_code == 200
    assert response.context["page"].paginator.count == count


@pytest.mark.parametrize("count", [3, 30])
def test_an_imports_page_takes_the_same_queries_for_few_or_many_items(
    client, owner_a, account, stripe, count, django_assert_max_num_queries
):
    settlement_import = _matched_lines(account, stripe, count)
    client.force_login(owner_a)
    url = reverse("reports:reconciliation-file", kwargs={"import_id": settlement_import.uuid})
    with django_assert_max_num_queries(10):
        response = client.get(url)
    assert response.status_code == 200
    assert response.context["page"].paginator.count == count
    assert "Resolve…" in response.content.decode()
