"""The oversight console: server-rendered pages for officers, the monitor and auditors."""
