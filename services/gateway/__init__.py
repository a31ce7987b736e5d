"""The gateway: the only public entry. Verifies tokens, rate limits, routes to services."""
