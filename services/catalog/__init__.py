"""The catalog view server (:8004): one document per item (product, price, stock, reviews) from the
view the catalog consumer keeps (``events.catalog``, ADR 0018)."""
