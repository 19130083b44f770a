-- Fiat-priced orders and refunds (docs/PRICES.md). An order converted at a feed's rate keeps where the
-- rate came from and when it was true; `refunded_pricing` is the part of its price (minor units of
-- `pricing_currency`) its live refunds count for, the fiat guard's running total beside the token's
-- `refunded_amount`. A refund of a fiat-priced order keeps its pricing snapshot as JSON (currency,
-- minor units, whether asked in fiat, rate, source, time).
ALTER TABLE orders ADD COLUMN rate_source TEXT;
ALTER TABLE orders ADD COLUMN rate_at INTEGER;
ALTER TABLE orders ADD COLUMN refunded_pricing TEXT NOT NULL DEFAULT '0';
ALTER TABLE refunds ADD COLUMN pricing TEXT;
-- An approval policy's threshold in a fiat currency (`ebb_core::approval::FiatMinimum`).
ALTER TABLE approval_policies ADD COLUMN fiat_currency TEXT;
ALTER TABLE approval_policies ADD COLUMN min_fiat_amount TEXT;
