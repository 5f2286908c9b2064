"""The edges: the HTTP service, the online store and the `retain` CLI."""
