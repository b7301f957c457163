"""Events about items: the outbox both backends write, the relay to the broker, idempotent consumers.

Every write that changes what the catalog view shows (an order's stock, a review created, deleted or
voted helpful, an item created) appends an event to the outbox table in its own transaction, in the
monolith and in the reviews service alike (``events.payloads`` is the one definition of each event's
payload, ``events.documents`` of the catalog document). ``python -m events relay`` publishes the
outbox to RabbitMQ, one queue per partition of the item ids (ADR 0018); ``python -m events consume
catalog`` keeps the catalog view (``events.catalog``) that ``services/catalog`` serves. Without
``BROKER_URL`` the relay applies the events to the view itself, in-process, with the same rules.

This package imports no backend (import-linter): the monolith and the services both import it.
"""
