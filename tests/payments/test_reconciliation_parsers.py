"""Reading settlement files: each format into normalised lines, and every kind of bad file
into errors by line, with nothing read from a file that has any."""

from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from payments.reconciliation import formats
from payments.reconciliation.bank import BankMapping
from payments.reconciliation.lines import LineKind, amount
from tests.payments.staff_urls_reconciliation import fixture

SHANGHAI = ZoneInfo("Asia/Shanghai")
REFS = {"paid": "ref-paid", "short": "ref-short", "costly": "ref-costly", "refund": "rf-1"}


def read(source, data, encoding="auto", mapping=None):
    return formats.read(source=source, data=data, encoding=encoding, mapping=mapping)


def messages(parsed):
    return [(error.row, error.column, error.message) for error in parsed.errors]


def test_a_stripe_export_becomes_payments_a_refund_a_fee_and_a_payout():
    parsed = read("stripe", fixture("stripe_balance.csv", **REFS))
    assert parsed.errors == []
    assert parsed.zone == "UTC"
    kinds = [(line.identity, line.kind) for line in parsed.lines]
    assert kinds == [
        ("txn_1PaidMatched", LineKind.PAYMENT),
        ("txn_1WrongAmount", LineKind.PAYMENT),
        ("txn_1HighFee", LineKind.PAYMENT),
        ("txn_1Unknown", LineKind.PAYMENT),
        ("txn_1Refund", LineKind.REFUND),
        ("txn_1BillingFee", LineKind.FEE),
        ("txn_1Payout", LineKind.PAYOUT),
    ]
    paid, refund, fee = parsed.lines[0], parsed.lines[4], parsed.lines[5]
    assert (paid.gross, paid.fee, paid.net, paid.currency) == (
        Decimal("50.00"), Decimal("1.75"), Decimal("48.25"), "CNY"
    )  # fmt: skip
    assert paid.reference == "ref-paid"
    assert paid.occurred_at == datetime(2026, 9, 1, 9, 15, tzinfo=UTC)
    assert (refund.gross, refund.refund_id, refund.refund_reference) == (
        Decimal("-10.00"), "re_1Refunded", "rf-1"
    )  # fmt: skip
    # Stripe's own charge is the fee line's fee; the net is Stripe's Net.
    assert (fee.gross, fee.fee, fee.net) == (Decimal(0), Decimal("2.00"), Decimal("-2.00"))


def test_a_wechat_pay_trade_bill_drops_the_backticks_and_checks_its_summary():
    parsed = read("wechat", fixture("wechat_tradebill.csv", **REFS))
    assert parsed.errors == []
    assert parsed.zone == "Asia/Shanghai"
    payment, refund = parsed.lines[0], parsed.lines[3]
    assert payment.kind == LineKind.PAYMENT
    assert payment.transaction_id == "4200000001202609010000000001"
    assert payment.reference == "ref-paid"
    assert (payment.gross, payment.fee) == (Decimal("100.00"), Decimal("0.60000"))
    assert payment.occurred_at == datetime(2026, 9, 1, 9, 15, 9, tzinfo=SHANGHAI)
    assert refund.kind == LineKind.REFUND
    assert (refund.gross, refund.fee) == (Decimal("-20.00"), Decimal("-0.12000"))
    assert (refund.refund_id, refund.refund_reference) == ("50300000012026090100000001", "rf-1")


def test_a_gbk_wechat_bill_is_detected_and_read():
    data = fixture("wechat_tradebill.csv", **REFS).decode("utf-8").encode("gbk")
    parsed = read("wechat", data)
    assert parsed.errors == []
    assert parsed.encoding == "gbk"
    assert parsed.lines[0].description == "A1 一号房 充值"


def test_a_gbk_alipay_account_bill_is_read_with_its_stated_period():
    data = fixture("alipay_account_bill_gbk.csv", "gbk", **REFS)
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")
    parsed = read("alipay", data)
    assert parsed.errors == []
    assert parsed.encoding == "gbk"
    assert parsed.period == (
        datetime(2026, 9, 1, tzinfo=SHANGHAI),
        datetime(2026, 9, 2, tzinfo=SHANGHAI),
    )
    kinds = [line.kind for line in parsed.lines]
    assert kinds == [LineKind.PAYMENT, LineKind.FEE, LineKind.PAYMENT, LineKind.PAYMENT,
                     LineKind.REFUND, LineKind.PAYOUT]  # fmt: skip
    payment, fee, refund = parsed.lines[0], parsed.lines[1], parsed.lines[4]
    assert (payment.identity, payment.transaction_id, payment.reference) == (
        "20260901000010001", "2026090122001400001000000001", "ref-paid"
    )  # fmt: skip
    assert (fee.gross, fee.fee, fee.reference) == (Decimal(0), Decimal("0.60"), "ref-paid")
    assert (refund.gross, refund.refund_reference) == (Decimal("-20.00"), "rf-1")
    assert payment.description == "A1 一号房 充值"


def test_a_gbk_file_read_as_utf8_names_the_first_line_that_is_not():
    parsed = read("alipay", fixture("alipay_account_bill_gbk.csv", "gbk", **REFS), "utf-8")
    assert parsed.lines == []
    [(row, _column, message)] = messages(parsed)
    assert row == 1
    assert "not UTF-8" in message
    assert "GBK" in message


def test_a_file_of_another_format_says_which_it_looks_like():
    parsed = read("stripe", fixture("alipay_account_bill_gbk.csv", "gbk", **REFS))
    assert parsed.lines == []
    texts = [message for _row, _column, message in messages(parsed)]
    assert "This is not a Stripe balance transactions export" in texts[0]
    assert "Alipay account bill" in texts[1]


def test_missing_columns_are_each_named_in_the_header_row():
    parsed = read("stripe", fixture("stripe_missing_columns.csv"))
    assert messages(parsed) == [
        (1, "Fee", "This column is missing."),
        (1, "Net", "This column is missing."),
    ]


def test_a_line_repeated_in_the_file_is_refused_and_names_the_first():
    parsed = read("stripe", fixture("stripe_duplicates.csv"))
    assert parsed.lines == []
    assert messages(parsed) == [(4, "", "This line repeats line 2 of the file.")]


def test_bad_amounts_and_dates_are_reported_row_by_row_and_nothing_is_read():
    parsed = read("stripe", fixture("stripe_bad_amounts.csv"))
    assert parsed.lines == []
    assert [(row, column) for row, column, _message in messages(parsed)] == [
        (3, "Amount"),
        (4, "Amount"),
        (5, "Net"),
        (6, "Created (UTC)"),
    ]
    assert "“5O.00” is not an amount." in parsed.errors[0].message
    assert "finer than a CNY minor unit" in parsed.errors[1].message


def test_a_wechat_bill_cut_short_is_refused():
    text = fixture("wechat_tradebill.csv", **REFS).decode()
    lines = text.splitlines(keepends=True)
    without_summary = "".join(lines[:-2]).encode()
    parsed = read("wechat", without_summary)
    assert parsed.lines == []
    assert "summary rows at the end are missing" in parsed.errors[0].message
    one_line_lost = "".join(lines[:2] + lines[3:]).encode()
    parsed = read("wechat", one_line_lost)
    assert {error.column for error in parsed.errors} >= {"总交易单数", "应结订单总金额"}


def test_an_alipay_bill_whose_totals_disagree_with_its_lines_is_refused():
    text = fixture("alipay_account_bill_gbk.csv", "gbk", **REFS).decode("gbk")
    # The first payment edited from 100.00 to 101.00: money in no longer adds up.
    edited = text.replace(",100.00,0.00,", ",101.00,0.00,", 1)
    assert edited != text
    parsed = read("alipay", edited.encode("gbk"))
    assert parsed.lines == []
    [error] = parsed.errors
    assert error.row == 14  # the 收入合计 line
    assert "3 lines of 246.00, but the file has 3 lines of 247.00" in error.message


BANK = BankMapping(
    currency="CNY",
    time_zone="Asia/Shanghai",
    date_column="Date",
    date_format="%d.%m.%Y",
    amount_column="Paid in",
    debit_column="Paid out",
    reference_column="Reference",
    description_column="Description",
    balance_column="Balance",
    delimiter=";",
    skip_rows=2,
    decimal_separator=",",
)


def test_a_bank_statement_is_read_through_its_mapping():
    parsed = read("bank", fixture("bank_statement.csv", **REFS), mapping=BANK)
    assert parsed.errors == []
    assert [(line.kind, line.gross, line.reference) for line in parsed.lines] == [
        (LineKind.PAYMENT, Decimal("1250.00"), "ref-paid"),
        (LineKind.PAYMENT, Decimal("90.00"), "ref-short"),
        (LineKind.PAYMENT, Decimal("35.00"), "NOT-OURS-77"),
        (LineKind.OTHER, Decimal("-12.50"), "FEES SEP"),
    ]
    assert parsed.lines[0].occurred_at == datetime(2026, 9, 1, tzinfo=SHANGHAI)
    # Without an id column, a line is known by its content, the same in every statement.
    again = read("bank", fixture("bank_statement.csv", **REFS), mapping=BANK)
    assert [line.identity for line in again.lines] == [line.identity for line in parsed.lines]


def test_a_bank_statement_without_the_mapped_columns_is_the_wrong_format():
    mapping = BankMapping(**{**BANK.__dict__, "date_column": "Booked", "amount_column": "Sum"})
    parsed = read("bank", fixture("bank_statement.csv", **REFS), mapping=mapping)
    assert "This is not a bank statement" in parsed.errors[0].message


def test_an_empty_file_is_refused():
    assert read("stripe", b"").errors[0].message == "The file is empty."


@given(
    st.decimals(min_value=-(10**9), max_value=10**9, places=2, allow_nan=False),
    st.sampled_from([".", ","]),
)
def test_an_amount_reads_back_whatever_its_grouping_and_separator(value, separator):
    grouping = "," if separator == "." else "."
    text = f"{value:,.2f}".replace(",", "_").replace(".", separator).replace("_", grouping)
    assert amount(text, decimal_separator=separator) == value
    assert amount(f"{value:.2f}".replace(".", separator), decimal_separator=separator) == value
