#!/usr/bin/env python3
"""A five-minute tour of ebb with Cobo's official Python SDK (`pip install cobo-waas2`).

Run `ebb dev` in one terminal, then `python3 scripts/tour.py [DATA_DIR]` (default `.ebb`). The SDK is
used unmodified: only its `host` and its response public key (`Configuration.resp_pubkey`) point at ebb.
It is also the compatibility test CI runs: every step checks what it gets and the script exits non-zero
on the first surprise.
"""
import hashlib
import http.server
import json
import sys
import threading
import time
import uuid
from decimal import Decimal
from pathlib import Path

import cobo_waas2
import requests
from coingate_api.coingate import CoingateAPI
from cobo_waas2.exceptions import ApiException
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey


def main() -> None:
    data_dir = Path(sys.argv[1] if len(sys.argv) > 1 else ".ebb")
    dev = json.loads((data_dir / "dev.json").read_text())

    # The SDK pins Cobo's response keys per host; point the one property at ebb's key.
    cobo_waas2.Configuration.resp_pubkey = property(lambda self: dev["server_public_key"])
    config = cobo_waas2.Configuration(api_private_key=dev["api_secret"], host=dev["base_url"])

    with cobo_waas2.ApiClient(config) as client:
        api = cobo_waas2.PaymentApi(client)

        # A webhook receiver, verifying as Cobo's `server_demo.py` does, registered through the SDK.
        receiver = Receiver(dev["server_public_key"])
        hooks = cobo_waas2.DevelopersWebhooksApi(client)
        endpoint = hooks.create_webhook_endpoint(
            cobo_waas2.CreateWebhookEndpointRequest(
                url=receiver.url,
                subscribed_events=[
                    cobo_waas2.WebhookEventType.PAYMENT_DOT_REFUND_DOT_STATUS_DOT_UPDATED,
                    cobo_waas2.WebhookEventType.PAYMENT_DOT_ORDER_DOT_STATUS_DOT_UPDATED,
                    cobo_waas2.WebhookEventType.PAYMENT_DOT_TRANSACTION_DOT_CREATED,
                    cobo_waas2.WebhookEventType.PAYMENT_DOT_TRANSACTION_DOT_COMPLETED,
                    cobo_waas2.WebhookEventType.COMPLIANCE_DOT_KYT_DOT_SCREENINGS_DOT_STATUS_DOT_UPDATED,
                    cobo_waas2.WebhookEventType.COMPLIANCE_DOT_DISPOSITION_DOT_STATUS_DOT_UPDATED,
                    cobo_waas2.WebhookEventType.COMPLIANCE_DOT_KYA_DOT_SCREENINGS_DOT_STATUS_DOT_UPDATED,
                ],
                description="tour",
            )
        )
        step("registered webhook endpoint", f"{endpoint.endpoint_id} -> {endpoint.url}")
        assert endpoint.status == cobo_waas2.WebhookEndpointStatus.STATUS_ACTIVE, endpoint.status

        merchant = api.create_merchant(cobo_waas2.CreateMerchantRequest(name="Tour Shop"))
        step("created merchant", merchant.merchant_id)
        assert merchant.name == "Tour Shop"
        merchant = api.update_merchant_by_id(merchant.merchant_id, cobo_waas2.UpdateMerchantByIdRequest(name="Tour Shop Ltd"))
        assert merchant.name == "Tour Shop Ltd"
        assert any(m.merchant_id == merchant.merchant_id for m in api.list_merchants(limit=50).data)

        # ebb dev's offline table: 1 USD and 0.92 EUR per token (docs/PRICES.md).
        rate = api.get_exchange_rate("ETH_USDT", "EUR")
        step("exchange rate", f"1 {rate.token_id} = {rate.rate} {rate.currency}")
        assert (rate.token_id, rate.currency, rate.rate) == ("ETH_USDT", "EUR", "0.92"), rate
        priced = api.create_payment_order(
            cobo_waas2.CreatePaymentOrderRequest(
                merchant_id=merchant.merchant_id,
                psp_order_code=f"tour-eur-{uuid.uuid4()}",
                payable_currency="ETH_USDT",
                pricing_currency="EUR",
                pricing_amount="46.00",
                fee_amount="0",
            )
        )
        step("EUR-priced order", f"EUR {priced.pricing_amount} = {priced.payable_amount} USDT at {priced.exchange_rate}")
        assert (priced.payable_amount, priced.exchange_rate) == ("50", "0.92"), priced

        order = api.create_payment_order(
            cobo_waas2.CreatePaymentOrderRequest(
                merchant_id=merchant.merchant_id,
                psp_order_code=f"tour-{uuid.uuid4()}",
                payable_currency="ETH_USDT",
                payable_amount="100.00",
                fee_amount="1.5",
            )
        )
        step("created order", f"{order.order_id}: pay {order.payable_amount} {order.payable_currency} to {order.receive_address}")
        assert order.status == "Pending", order.status

        # A customer pays the order in full on the sandbox chain; ebb's pay-in watcher sees the transfer
        # (order Processing) and credits it once it has its confirmations (order Completed).
        paid = sandbox_pay(client, dev["base_url"], order.order_id)
        step("customer paid", f"{paid['amount']} from {paid['from_address']} (tx {paid['tx_hash']})")
        order = wait_for(lambda: api.get_payment_order_detail_by_id(order.order_id), lambda o: o.status == "Completed")
        step("order confirmed on the sandbox chain", order.status)
        assert order.received_token_amount == "100", order.received_token_amount
        assert order.transactions and order.transactions[0].from_address == paid["from_address"]

        balances = api.list_merchant_balances(merchant_ids=merchant.merchant_id, token_id="ETH_USDT")
        step("merchant balance", balances.data[0].total_balance)
        assert balances.data[0].total_balance == "98.5", balances.data[0]
        psp_before = api.get_psp_balance(token_id="ETH_USDT").total_balance

        # A refund without an address waits in PendingConfirmation until the merchant supplies one.
        request_id = f"tour-refund-{uuid.uuid4()}"
        create = cobo_waas2.CreateRefundRequest(
            request_id=request_id,
            merchant_id=merchant.merchant_id,
            order_id=order.order_id,
            payable_amount="25.5",
            token_id="ETH_USDT",
            refund_type="Merchant",
            charge_merchant_fee=True,
            merchant_fee_amount="0.5",
            merchant_fee_token_id="ETH_USDT",
        )
        refund = api.create_refund(create_refund_request=create)
        step("created refund", f"{refund.refund_id} {refund.status}")
        assert refund.status == "PendingConfirmation", refund.status
        assert refund.to_address == ""
        again = api.create_refund(create_refund_request=create)
        assert again.refund_id == refund.refund_id, "the same request_id must return the same refund"
        step("same request again", "returned the same refund (idempotent)")

        fetched = api.get_refund_detail_by_id(refund.refund_id)
        assert fetched.amount == "25.5" and fetched.merchant_fee_amount == "0.5"
        listed = api.get_refunds(request_id=request_id)
        assert [r.refund_id for r in listed.data] == [refund.refund_id]
        assert listed.pagination.total_count == 1

        balances = api.list_merchant_balances(merchant_ids=merchant.merchant_id, token_id="ETH_USDT")
        step("merchant balance while reserved", balances.data[0].total_balance)
        assert balances.data[0].total_balance == "72.5", balances.data[0]  # 98.5 - 25.5 - 0.5

        try:
            api.create_refund(
                create_refund_request=cobo_waas2.CreateRefundRequest(
                    request_id=f"tour-too-much-{uuid.uuid4()}",
                    order_id=order.order_id,
                    payable_amount="80",
                    token_id="ETH_USDT",
                    refund_type="Psp",
                )
            )
            raise AssertionError("refunding more than the order received must be refused")
        except ApiException as e:
            step("over-refund refused", f"HTTP {e.status}")
            assert e.status == 422, e.status

        cancelled = api.cancel_refund_by_id(refund.refund_id)
        assert cancelled.status == "Failed" and cancelled.failed_reason == "Cancelled", cancelled
        step("cancelled", f"status {cancelled.status}, failed_reason {cancelled.failed_reason}")
        balances = api.list_merchant_balances(merchant_ids=merchant.merchant_id, token_id="ETH_USDT")
        assert balances.data[0].total_balance == "98.5", balances.data[0]
        assert api.get_psp_balance(token_id="ETH_USDT").total_balance == psp_before

        # A second refund, to the customer who paid: ebb pays it out on the sandbox chain by itself.
        payout = api.create_refund(
            create_refund_request=cobo_waas2.CreateRefundRequest(
                request_id=f"tour-payout-{uuid.uuid4()}",
                merchant_id=merchant.merchant_id,
                order_id=order.order_id,
                payable_amount="25.5",
                token_id="ETH_USDT",
                refund_type="Merchant",
                charge_merchant_fee=True,
                merchant_fee_amount="0.5",
                merchant_fee_token_id="ETH_USDT",
            )
        )
        payout = api.update_refund_by_id(
            payout.refund_id, cobo_waas2.UpdateRefundByIdRequest(to_address=paid["from_address"])
        )
        assert payout.status in ("Pending", "Processing"), payout.status
        assert payout.to_address == paid["from_address"]
        step("refund to the payer", f"{payout.refund_id} to {payout.to_address}: {payout.status}")
        payout = wait_for(lambda: api.get_refund_detail_by_id(payout.refund_id), lambda r: r.status == "Completed")
        tx = payout.transactions[0]
        assert tx.status == "Completed" and tx.tx_hash and tx.amount == "25.5", tx
        step("refund paid out", f"{payout.status}, tx {tx.tx_hash} from {tx.from_address}")
        balances = api.list_merchant_balances(merchant_ids=merchant.merchant_id, token_id="ETH_USDT")
        assert balances.data[0].total_balance == "72.5", balances.data[0]
        psp_after = api.get_psp_balance(token_id="ETH_USDT").total_balance
        assert Decimal(psp_after) - Decimal(psp_before) == Decimal("0.5"), (psp_before, psp_after)
        step("PSP balance", f"{psp_before} -> {psp_after} (the developer fee, at payout)")

        # The refund's events arrived signed, and parse as the SDK's WebhookEvent models.
        events = wait_for(
            lambda: [e for e in receiver.events() if isinstance(e.data.actual_instance, cobo_waas2.PaymentRefundEventData)
                     and e.data.actual_instance.refund_id == payout.refund_id],
            lambda evs: any(e.data.actual_instance.status == "Completed" for e in evs),
        )
        statuses = [e.data.actual_instance.status.value for e in events]
        step("webhooks for the refund", statuses)
        assert statuses[-1] == "Completed" and "Processing" in statuses, statuses
        kinds = {type(e.data.actual_instance).__name__ for e in receiver.events()}
        assert {"PaymentRefundEventData", "PaymentOrderEventData", "PaymentTransactionEventData"} <= kinds, kinds
        listed = hooks.list_webhook_events(endpoint_id=endpoint.endpoint_id, limit=50)
        assert listed.data and all(e.status in (cobo_waas2.WebhookEventStatus.SUCCESS, cobo_waas2.WebhookEventStatus.RETRYING) for e in listed.data)
        logs = hooks.list_webhook_event_logs(event_id=events[-1].event_id, endpoint_id=endpoint.endpoint_id)
        assert logs.data and logs.data[0].success and logs.data[0].response_status_code == 200, logs.data
        defs = hooks.list_webhook_event_definitions()
        assert any(d.event_type == cobo_waas2.WebhookEventType.PAYMENT_DOT_REFUND_DOT_STATUS_DOT_UPDATED for d in defs)
        step("webhook event log", f"{len(listed.data)} events, last delivered in {logs.data[0].response_time} ms")

        changes = api.list_balance_changes(source_account=merchant.merchant_id, token_id="ETH_USDT", limit=10)
        kinds = [(c.source_type, c.flow_direction, c.amount) for c in changes.data]
        step("balance changes", kinds)
        assert ("OrderIn", "in", "98.5") in kinds
        fees = api.list_balance_changes(source_account="developer", token_id="ETH_USDT", limit=50)
        unknown = cobo_waas2.PaymentBalanceChangeSourceType.UNKNOWN
        assert fees.data and all(c.source_type != unknown for c in fees.data + changes.data), (fees.data, changes.data)
        step("source types the SDK knows", sorted({str(c.source_type.value) for c in fees.data + changes.data}))

        # Address screening (KYA) through the SDK's ComplianceApi: an entry of the OFAC list ebb ships
        # (2024-09-27) is High risk with a sanctions detail; the customer's own address is Low.
        compliance = cobo_waas2.ComplianceApi(client)
        sanctioned = "0x01e2919679362dFBC9ee1644Ba9C6da6D6245BB1"
        results = compliance.create_kya_screenings(
            cobo_waas2.CreateKyaScreeningsBody(
                screenings=[
                    cobo_waas2.KyaScreeningRequest(request_id="tour-kya-1", address=sanctioned, chain_id="ETH", note="tour"),
                    cobo_waas2.KyaScreeningRequest(request_id="tour-kya-2", address=paid["from_address"], chain_id="ETH"),
                ]
            )
        )
        assert [r.risk_assessment.level for r in results] == [cobo_waas2.KyaRiskLevel.HIGH, cobo_waas2.KyaRiskLevel.LOW], results
        assert results[0].status == cobo_waas2.KyaScreeningStatus.SCREENED, results[0]
        assert any(d.category == "sanctions" for d in results[0].risk_assessment.details), results[0]
        again = compliance.get_kya_screening(results[0].screening_id)
        assert again.address.lower() == sanctioned.lower() and again.note == "tour", again
        listed = compliance.list_kya_screenings(screening_ids=",".join(r.screening_id for r in results), limit=10)
        assert {r.screening_id for r in listed.data} == {r.screening_id for r in results}, listed
        step("KYA screenings", [(r.address, r.risk_assessment.level.value) for r in results])
        # A refund to the sanctioned address is refused: nothing is ever sent there.
        try:
            api.create_refund(
                create_refund_request=cobo_waas2.CreateRefundRequest(
                    request_id="tour-sanctioned", merchant_id=merchant.merchant_id, payable_amount="1",
                    to_address=sanctioned, token_id="ETH_USDT", refund_type="Merchant",
                )
            )
            raise AssertionError("a refund to a sanctioned address was accepted")
        except cobo_waas2.exceptions.ApiException as e:
            assert e.status == 400 and "40004" in str(e.body), e
        step("refund to a sanctioned address", "refused (40004)")

        # A pay-in from the sanctioned address is held: received, credited to nobody, until unfrozen.
        held_order = api.create_payment_order(
            cobo_waas2.CreatePaymentOrderRequest(
                merchant_id=merchant.merchant_id, psp_order_code=f"tour-held-{uuid.uuid4()}",
                payable_currency="ETH_USDT", payable_amount="10", fee_amount="0.15",
            )
        )
        balance_before = api.list_merchant_balances(merchant_ids=merchant.merchant_id, token_id="ETH_USDT").data[0].total_balance
        sandbox_pay(client, dev["base_url"], held_order.order_id, from_address=sanctioned)
        held_order = wait_for(
            lambda: api.get_payment_order_detail_by_id(held_order.order_id),
            lambda o: o.transactions and o.transactions[0].status == "Completed",
        )
        assert held_order.status == "Processing", held_order.status
        held_tx = held_order.transactions[0].tx_id
        kyt = compliance.get_kyt_screening_status(transaction_id=held_tx)
        assert kyt.review_status == cobo_waas2.ReviewStatusType.PENDINGREVIEW, kyt
        assert kyt.funds_status == cobo_waas2.FundsStatusType.FROZEN, kyt
        assert api.list_merchant_balances(merchant_ids=merchant.merchant_id, token_id="ETH_USDT").data[0].total_balance == balance_before
        step("pay-in from the sanctioned address", f"{kyt.review_status.value}, funds {kyt.funds_status.value}")
        released = compliance.unfreeze_funds(cobo_waas2.UnfreezeDisposition(transaction_id=held_tx))
        assert released.status == cobo_waas2.DispositionStatus.UNFROZEN, released
        disposition = compliance.get_disposition_status(transaction_id=held_tx)
        assert disposition.disposition_type == cobo_waas2.DispositionType.UNFREEZE, disposition
        held_order = api.get_payment_order_detail_by_id(held_order.order_id)
        assert held_order.status == "Completed", held_order.status
        step("unfrozen", f"order {held_order.status}, disposition {disposition.disposition_status.value}")

        # Another pay-in from it is isolated instead: paid by ebb's payout executor to the sandbox's
        # quarantine address (ebb dev configures one per EVM chain).
        quarantine = "0x0000000000000000000000000000000000001501"
        second = api.create_payment_order(
            cobo_waas2.CreatePaymentOrderRequest(
                merchant_id=merchant.merchant_id, psp_order_code=f"tour-isolated-{uuid.uuid4()}",
                payable_currency="ETH_USDT", payable_amount="10", fee_amount="0.15",
            )
        )
        sandbox_pay(client, dev["base_url"], second.order_id, from_address=sanctioned)
        second = wait_for(
            lambda: api.get_payment_order_detail_by_id(second.order_id),
            lambda o: o.transactions and o.transactions[0].status == "Completed",
        )
        second_tx = second.transactions[0].tx_id
        try:
            compliance.refund_funds(cobo_waas2.RefundDisposition(
                transaction_id=second_tx, destination_address=sanctioned, disposition_amount="10"))
            raise AssertionError("held funds were refunded to a sanctioned sender")
        except cobo_waas2.exceptions.ApiException as e:
            assert e.status == 400 and "40004" in str(e.body), e
        # An external KYT decision rejects it: the funds stay frozen, for isolation.
        decided = compliance.submit_kyt_screening_decisions(cobo_waas2.SubmitKytScreeningsDecisionsBody(
            transaction_id=second_tx, result=cobo_waas2.KytScreeningsDecisionsType.REJECTION))
        assert decided.submitted, decided
        kyt = compliance.get_kyt_screening_status(transaction_id=second_tx)
        assert kyt.review_status == cobo_waas2.ReviewStatusType.REJECTED, kyt
        assert kyt.funds_status == cobo_waas2.FundsStatusType.FROZEN, kyt
        step("KYT decision", f"{kyt.review_status.value}, funds {kyt.funds_status.value}")
        isolating = compliance.isolate_funds(cobo_waas2.IsolateDisposition(
            transaction_id=second_tx, destination_address=quarantine, disposition_amount="10"))
        assert isolating.status == cobo_waas2.DispositionStatus.ISOLATING, isolating
        isolated = wait_for(
            lambda: compliance.get_disposition_status(transaction_id=second_tx),
            lambda d: d.disposition_status == cobo_waas2.DispositionStatus.ISOLATED,
        )
        assert isolated.disposition_type == cobo_waas2.DispositionType.ISOLATE and isolated.disposition_transaction_id
        step("isolated", f"{isolated.disposition_status.value} to {quarantine} (payout {isolated.disposition_transaction_id})")
        # Cobo's compliance events, parsed by the SDK's own models.
        compliance_events = wait_for(
            lambda: [e.data.actual_instance for e in receiver.events()
                     if getattr(e.data.actual_instance, "transaction_id", None) == second_tx],
            lambda evs: any(isinstance(d, cobo_waas2.ComplianceDispositionUpdateEventData)
                            and d.disposition_status == cobo_waas2.DispositionStatus.ISOLATED for d in evs),
        )
        reviews = [d.review_status.value for d in compliance_events
                   if isinstance(d, cobo_waas2.ComplianceKytScreeningsUpdateEventData)]
        assert reviews == ["PendingReview", "Rejected"], reviews
        screened = [e.data.actual_instance for e in receiver.events()
                    if isinstance(e.data.actual_instance, cobo_waas2.ComplianceKyaScreeningsUpdateEventData)]
        assert screened, "no KYA screening event"
        step("compliance events", f"KYT {reviews}, disposition "
             f"{[d.disposition_status.value for d in compliance_events if isinstance(d, cobo_waas2.ComplianceDispositionUpdateEventData)]}, "
             f"{len(screened)} KYA")

        # The seed PSP's KYT refund API (/v1.0, bearer tokens; no SDK exists, so plain HTTP): a third
        # held pay-in is refunded by createCryptoRefund and confirmCryptoRefund to a clean address.
        third = api.create_payment_order(
            cobo_waas2.CreatePaymentOrderRequest(
                merchant_id=merchant.merchant_id, psp_order_code=f"tour-kyt-{uuid.uuid4()}",
                payable_currency="ETH_USDT", payable_amount="10", fee_amount="0.15",
            )
        )
        sandbox_pay(client, dev["base_url"], third.order_id, from_address=sanctioned)
        wait_for(
            lambda: api.get_payment_order_detail_by_id(third.order_id),
            lambda o: o.transactions and o.transactions[0].status == "Completed",
        )
        kyt_api = KytClient(dev["kyt_api_base_url"], dev["kyt_api_client_id"], dev["kyt_api_client_secret"])
        made = kyt_api.call("POST", "/payment/crypto/createCryptoRefund", {
            "originalTransactionType": 2, "originalTransactionId": third.order_id, "clientReference": f"tour-{uuid.uuid4()}"})
        assert made["status"] == 1 and made["amount"] == "10", made
        refused = kyt_api.call("POST", "/payment/crypto/confirmCryptoRefund", {"cryptoRefundId": made["cryptoRefundId"]},
                               expect="40004")
        step("KYT refund API: back to the sanctioned sender", f"refused ({refused['code']})")
        kyt_api.call("POST", "/payment/crypto/confirmCryptoRefund", {
            "cryptoRefundId": made["cryptoRefundId"], "refundAddress": "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"})
        done = wait_for(
            lambda: kyt_api.call("GET", f"/payment/crypto/getCryptoRefund?cryptoRefundId={made['cryptoRefundId']}"),
            lambda r: r["status"] == 3 and r["txnHash"],
        )
        step("KYT refund API: crypto refund", f"{done['cryptoRefundId']} {done['statusName']}, txnHash {done['txnHash']}")

        # CoinGate's API through a published client (coingate-api from PyPI), its base URL pointed at ebb.
        coingate = CoingateAPI(auth_token=dev["coingate_api_token"], environment="sandbox")
        coingate._base_url = dev["coingate_base_url"] + "/v2"
        assert coingate.ping()["ping"] == "pong"
        assert coingate.exchange_rate("USDT", "EUR") == 0.92
        cg_order = coingate.create_order(46, "EUR", "EUR", order_id=f"tour-{uuid.uuid4()}", title="Tour order")
        assert cg_order["status"] == "new" and isinstance(cg_order["id"], int), cg_order
        cg_checkout = coingate.checkout(cg_order["id"], "USDT")
        step("CoinGate order", f"#{cg_order['id']}: EUR {cg_order['price_amount']} = {cg_checkout['pay_amount']} "
             f"{cg_checkout['pay_currency']} on {cg_checkout['platform']['title']} to {cg_checkout['payment_address']}")
        assert cg_checkout["pay_amount"] == "50", cg_checkout
        # The same order through the Cobo API, paid on the sandbox chain, then paid on CoinGate's.
        cobo_order = api.list_payment_orders(psp_order_id=f"coingate-{cg_order['id']}").data[0]
        assert cobo_order.receive_address == cg_checkout["payment_address"]
        sandbox_pay(client, dev["base_url"], cobo_order.order_id)
        listed = wait_for(
            lambda: coingate.orders(per_page=10),
            lambda page: any(o["id"] == cg_order["id"] and o["status"] == "paid" for o in page["orders"]),
        )
        step("CoinGate order paid", f"{listed['total_orders']} CoinGate order(s) listed")
        # coingate-api has no refund calls: the refund goes over plain HTTP, in CoinGate's form encoding.
        refunds_url = f"{dev['coingate_base_url']}/v2/orders/{cg_order['id']}/refunds"
        auth = {"Authorization": f"Token {dev['coingate_api_token']}"}
        # With `email`, CoinGate (and ebb) first ask the customer to confirm the address by e-mail;
        # `ebb dev` e-mails nobody unless EBB_MAIL_* names an SMTP server (docs/MAIL.md), so the tour
        # skips that step and the address is used as given.
        made = requests.post(refunds_url, headers=auth, data={
            "amount": "23", "address": "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", "reason": "tour",
            "email": "buyer@example.com", "skip_user_address_confirmation": "true"})
        assert made.status_code == 200, made.text
        cg_refund = made.json()
        assert (cg_refund["request_amount"], cg_refund["refund_amount"]) == ("23", "25"), cg_refund
        finished = wait_for(
            lambda: requests.get(f"{refunds_url}/{cg_refund['id']}", headers=auth).json(),
            lambda r: r["status"] == "completed",
        )
        step("CoinGate refund", f"#{finished['id']}: EUR {finished['request_amount']} = {finished['refund_amount']} "
             f"USDT, {finished['status']}, tx {finished['transactions'][0]['hash']}")

    print("\ntour complete: every step checked")


class KytClient:
    """The KYT refund API: a bearer token from the client id and secret, then `{code, msg, data}`."""

    def __init__(self, base_url: str, client_id: str, client_secret: str) -> None:
        self.base_url = base_url
        self.token = self._send("POST", "/auth/getToken", {"clientId": client_id, "clientSecret": client_secret}, None)[
            "data"]["accessToken"]

    def _send(self, method: str, path: str, body: dict | None, token: str | None) -> dict:
        import urllib.error
        import urllib.request
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base_url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as e:
            return json.loads(e.read())

    def call(self, method: str, path: str, body: dict | None = None, expect: str = "00000") -> dict:
        answer = self._send(method, path, body, self.token)
        if answer.get("code") != expect:
            raise AssertionError(f"{method} {path}: expected code {expect}, got {answer}")
        return answer["data"] if expect == "00000" else answer


class Receiver:
    """Receives webhooks on 127.0.0.1 and verifies each like Cobo's `server_demo.py`: Ed25519 over
    sha256(sha256(f"{raw_body}|{Biz-Timestamp}")) with the sender's public key; a bad one is a failure."""

    def __init__(self, public_key_hex: str) -> None:
        self.verify_key = VerifyKey(bytes.fromhex(public_key_hex))
        self.received: list = []
        self.errors: list = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.accept(raw, self.headers.get("Biz-Timestamp"), self.headers.get("Biz-Resp-Signature"))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/webhook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def accept(self, raw: bytes, timestamp: str, signature: str) -> None:
        message = f"{raw.decode('utf8')}|{timestamp}"
        digest = hashlib.sha256(hashlib.sha256(message.encode()).digest()).digest()
        try:
            self.verify_key.verify(smessage=digest, signature=bytes.fromhex(signature))
        except (BadSignatureError, ValueError, TypeError) as e:
            self.errors.append(f"bad signature on {raw[:80]!r}: {e}")
            return
        if abs(time.time() * 1000 - int(timestamp)) > 5 * 60 * 1000:
            self.errors.append(f"Biz-Timestamp {timestamp} is more than 5 minutes off")
        self.received.append(cobo_waas2.WebhookEvent.from_dict(json.loads(raw)))

    def events(self) -> list:
        assert not self.errors, self.errors
        return list(self.received)


def sandbox_pay(client: "cobo_waas2.ApiClient", base_url: str, order_id: str, from_address: str | None = None) -> dict:
    """POST /sandbox/orders/{id}/payments through the SDK's own signing client (not a Cobo endpoint)."""
    # Without a sender, an empty body: the SDK signs "" for a falsy body, so send none at all.
    method, url, headers, body = "POST", f"{base_url}/sandbox/orders/{order_id}/payments", {}, None
    if from_address:
        headers, body = {"Content-Type": "application/json"}, {"from_address": from_address}
    response = client.call_api(method, url, header_params=headers, body=body)
    response.read()
    if response.status != 201:
        raise AssertionError(f"sandbox payment: HTTP {response.status} {response.data!r}")
    return json.loads(response.data)


def wait_for(fetch, done, seconds: float = 30.0):
    """Polls `fetch()` until `done(result)`; the sandbox chain mines a block a second."""
    deadline = time.monotonic() + seconds
    while True:
        got = fetch()
        if done(got):
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting after {seconds} s: {got}")
        time.sleep(0.2)


def step(what: str, detail: object) -> None:
    print(f"- {what}: {detail}")


if __name__ == "__main__":
    main()
