-- A key's role: an operator's key does what its scope allows; an approver's key reads, and approves or
-- rejects refunds (issue 15), and changes nothing else. Existing keys keep doing what they did.
ALTER TABLE api_keys ADD COLUMN role TEXT NOT NULL DEFAULT 'operator';
