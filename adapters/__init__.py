"""Clients for the gateway's upstreams: usable on their own by a portal backend (they never import the daemon).

- :mod:`adapters.http`: the one way every adapter gets its ``httpx.AsyncClient`` (timeouts, limits, TLS, auth and a
  transport chain where recording, replay and fault injection plug in).
- :mod:`adapters.errors`: the small set of errors every adapter maps its failures to.
"""
