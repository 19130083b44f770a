#!/usr/bin/env python3
"""Makes refund links through Cobo's official SDK (`PaymentApi.create_refund_link`) against `ebb dev`,
for the browser test (scripts/browser/refund_link.mjs) or for trying the page by hand.

    python3 scripts/make_refund_links.py DATA_DIR [COUNT]

Pays one sandbox order of 100 USDT, waits until it is credited, makes COUNT links refunding 10 each
and prints them as JSON: {"payer": ..., "links": [{"url": "...?token=...", "request_id": ...}, ...]}.
"""
import json
import sys
import uuid
from pathlib import Path

import cobo_waas2

from tour import sandbox_pay, wait_for


def main() -> None:
    data_dir = Path(sys.argv[1] if len(sys.argv) > 1 else ".ebb")
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    dev = json.loads((data_dir / "dev.json").read_text())
    cobo_waas2.Configuration.resp_pubkey = property(lambda self: dev["server_public_key"])
    config = cobo_waas2.Configuration(api_private_key=dev["api_secret"], host=dev["base_url"])
    with cobo_waas2.ApiClient(config) as client:
        api = cobo_waas2.PaymentApi(client)
        merchant = api.create_merchant(cobo_waas2.CreateMerchantRequest(name="Acme Shop"))
        order = api.create_payment_order(
            cobo_waas2.CreatePaymentOrderRequest(
                merchant_id=merchant.merchant_id,
                psp_order_code=f"links-{uuid.uuid4()}",
                payable_currency="ETH_USDT",
                payable_amount="100",
                fee_amount="0",
            )
        )
        sandbox_pay(client, dev["base_url"], order.order_id)
        order = wait_for(lambda: api.get_payment_order_detail_by_id(order.order_id), lambda o: o.status == "Completed")
        payer = order.transactions[0].from_address
        links = []
        for i in range(count):
            request_id = f"browser-{uuid.uuid4()}"
            link = api.create_refund_link(
                cobo_waas2.CreateRefundLinkRequest(
                    request_id=request_id,
                    business_info=cobo_waas2.RefundLinkBusinessInfo(
                        transaction_id=order.transactions[0].tx_id,
                        amount="10",
                        refund_source=cobo_waas2.RefundType.MERCHANT,
                        merchant_id=merchant.merchant_id,
                    ),
                    display_info=cobo_waas2.LinkDisplayInfo(
                        developer_name="Acme Shop", return_url="https://shop.example.com/orders/42"
                    ),
                )
            )
            assert isinstance(link, cobo_waas2.Link), link
            refunds = api.get_refunds(request_id=request_id).data
            assert len(refunds) == 1 and refunds[0].status == "PendingConfirmation", refunds
            links.append({"url": f"{link.url}?token={link.token}", "request_id": request_id, "refund_id": refunds[0].refund_id})
        print(json.dumps({"payer": payer, "links": links}))


if __name__ == "__main__":
    main()
