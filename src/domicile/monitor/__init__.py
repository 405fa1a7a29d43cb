"""The independent monitor: follows region logs, witnesses, replays, cross-checks, alerts.

It runs on the trusted partner's machine with its own keys and state, and trusts nothing
the gateway says without checking it: it imports only the pure ledger and policy code,
the topology and catalog parsers, `domicile.errors` and an HTTP client (httpx) — never
the gateway, API, vault, keys, runtime or storage packages. See docs/monitor.md.
"""
