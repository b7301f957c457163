"""The new microservices that take over the hot endpoints from the monolith.

``reviews`` (reviews.*) and ``recommendations`` (recommendations.*) are Starlette
apps over the monolith's shared database (ADR 0001, 0004). ``payments`` takes the
monolith's checkout payments over several providers, in tables of its own (ADR 0017).  ``common`` holds what
both need: settings, database access, table definitions and the HTTP contract
(envelope, identity, parsing, pagination), written again here on purpose: the
services never import the monolith, and the contract tests prove both agree.
"""
