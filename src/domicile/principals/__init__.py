"""Principals (services and employees) and the bearer tokens they authenticate with."""
