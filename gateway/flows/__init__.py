"""The gateway's flows to and from the upstreams: one package per flow, with its settings, handlers and reactions."""
