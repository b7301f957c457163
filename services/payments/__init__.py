"""The payments service: a distributor in front of two or more payment providers (PGs).

Charges each payment with at most one provider: it fails over to another provider only when the
first certainly did not charge, asks for the status of the reference when an answer was lost, and
leaves what stays unknown ``pending`` for reconciliation (ADR 0017). ``simulator`` is a provider with
its own ledger and run-time faults, for ``make run``, the tests and ``bench/payment_outage.py``.
"""
