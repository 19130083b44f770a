-- What a decided payout cost the hot wallet in the chain's native coin (gas used × effective gas
-- price on EVM), in base units as a decimal string; NULL when the chain did not say (never mined, or
-- decided before this column existed). A reverted payout costs gas too.
ALTER TABLE payment_transactions ADD COLUMN network_fee TEXT;
