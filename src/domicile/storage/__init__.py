"""Connections and schema migrations shared by every SQLite and PostgreSQL store."""
