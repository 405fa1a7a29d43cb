"""Residency: which jurisdiction a country belongs to and which region is its data's home."""
