"""The customer's side of the product: one-time codes, page sessions, rate limits and
preference changes, over the ledger. The self-service page (`portal/`) and its phone-channel API
call these; nothing here knows HTTP.

    keys          one secret, a derived key per purpose (code hashes, cookies, buckets)
    codes         one-time SMS codes: drawn, hashed, bound, expiring, single use, 5 tries
    sessions      opaque server-side sessions behind signed cookies, idle and absolute expiry
    limits        fixed-window rate limits in the ledger database or Redis
    preferences   a customer's change of delivery and notices, checked and recorded
"""
