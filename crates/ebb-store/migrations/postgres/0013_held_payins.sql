-- Screening pay-in senders and holding what they paid (issue 15).
--
-- `screening`: the sender's screening, taken when the transfer is first seen (JSON). `funds_status`:
-- Cobo's KYT funds status of a pay-in whose sender screening held it: `Frozen` (its amount sits in the
-- `held` ledger account, not credited), then `Unfrozen` (credited as a normal pay-in); NULL: `Normal`.
ALTER TABLE payment_transactions ADD COLUMN screening TEXT;
ALTER TABLE payment_transactions ADD COLUMN funds_status TEXT;
