"""The legacy shop monolith: a Django project that authenticates users and serves the shop API.

It is the system the gateway strangles: every route the gateway does not send
to a new service lands here.  Domain apps depend one way
(users > items > commerce > activation > reviews/search/content); ``common``
holds the HTTP plumbing they all share (error envelope, auth, parsing).
"""
