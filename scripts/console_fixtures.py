#!/usr/bin/env python3
"""What the console's browser test (scripts/browser/console.mjs) needs in a live `ebb dev`, made through
Cobo's official SDK, and the check of the CSV files it downloads against the API.

    python3 scripts/console_fixtures.py make DATA_DIR > fixtures.json
    python3 scripts/console_fixtures.py check DATA_DIR fixtures.json refunds.csv

`make`: a merchant whose refunds need one approval (an approval policy limited to it, so nothing else
in `ebb dev` waits), an order of 100 USDT paid on the sandbox and credited, and a webhook endpoint that
cannot be reached (127.0.0.1 port 9), so that the refunds' deliveries fail and can be sent again.
`check`: every row of the console's refunds CSV for that merchant equals the refund the API returns.
"""
import csv
import json
import sys
import uuid
from pathlib import Path

import cobo_waas2

from tour import sandbox_pay, wait_for


def client(data_dir: Path):
    dev = json.loads((data_dir / "dev.json").read_text())
    cobo_waas2.Configuration.resp_pubkey = property(lambda self: dev["server_public_key"])
    config = cobo_waas2.Configuration(api_private_key=dev["api_secret"], host=dev["base_url"])
    return dev, cobo_waas2.ApiClient(config)


def call(api_client, base_url: str, method: str, path: str, body: dict) -> dict:
    """An ebb endpoint the SDK has no method for, through the SDK's own signing client."""
    response = api_client.call_api(
        method, f"{base_url}{path}", header_params={"Content-Type": "application/json"}, body=body
    )
    response.read()
    if response.status // 100 != 2:
        raise AssertionError(f"{method} {path}: HTTP {response.status} {response.data!r}")
    return json.loads(response.data)


def make(data_dir: Path) -> None:
    dev, api_client = client(data_dir)
    with api_client:
        api = cobo_waas2.PaymentApi(api_client)
        merchant = api.create_merchant(cobo_waas2.CreateMerchantRequest(name="Console Shop"))
        call(
            api_client,
            dev["base_url"],
            "POST",
            "/payments/approval_policies",
            {"name": "console shop", "merchant_ids": [merchant.merchant_id], "approvals_required": 1},
        )
        webhooks = cobo_waas2.DevelopersWebhooksApi(api_client)
        webhooks.create_webhook_endpoint(
            cobo_waas2.CreateWebhookEndpointRequest(
                url="http://127.0.0.1:9/unreachable",
                subscribed_events=[cobo_waas2.WebhookEventType.PAYMENT_DOT_REFUND_DOT_STATUS_DOT_UPDATED],
            )
        )
        order = api.create_payment_order(
            cobo_waas2.CreatePaymentOrderRequest(
                merchant_id=merchant.merchant_id,
                psp_order_code=f"console-{uuid.uuid4()}",
                payable_currency="ETH_USDT",
                payable_amount="100",
                fee_amount="0",
            )
        )
        sandbox_pay(api_client, dev["base_url"], order.order_id)
        wait_for(lambda: api.get_payment_order_detail_by_id(order.order_id), lambda o: o.status == "Completed")
    print(
        json.dumps(
            {
                "console_url": dev["console_url"],
                "admin_email": dev["console_email"],
                "admin_password": dev["console_password"],
                "merchant_id": merchant.merchant_id,
                "order_id": order.order_id,
            }
        )
    )


PAID_SINCE = {("Pending", "Processing"), ("Pending", "Completed"), ("Processing", "Completed")}


def check(data_dir: Path, fixtures: dict, csv_file: Path) -> None:
    rows = list(csv.DictReader(csv_file.open(newline="")))
    dev, api_client = client(data_dir)
    with api_client:
        api = cobo_waas2.PaymentApi(api_client)
        listed = api.get_refunds(merchant_id=fixtures["merchant_id"], limit=50).data
    assert listed, "the merchant has refunds"
    by_id = {r["refund_id"]: r for r in rows}
    assert len(rows) == len(listed), f"{len(rows)} CSV rows, {len(listed)} refunds from the API"
    for refund in listed:
        row = by_id[refund.refund_id]
        for field in ("request_id", "merchant_id", "token_id", "amount", "to_address", "status"):
            want = getattr(refund, field)
            want = want.value if hasattr(want, "value") else want
            # The approved refund is being paid on the sandbox meanwhile: its status may have moved on.
            if field == "status" and (row[field], want) in PAID_SINCE:
                continue
            assert row[field] == (want or ""), f"{refund.refund_id} {field}: CSV {row[field]!r}, API {want!r}"
    print(f"ok: the CSV's {len(rows)} rows equal the API's refunds")


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(Path(sys.argv[2]))
    else:
        check(Path(sys.argv[2]), json.loads(Path(sys.argv[3]).read_text()), Path(sys.argv[4]))
