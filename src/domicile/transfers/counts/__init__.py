"""The schema of the threshold counters' own database (component `thresholds`).

`domicile.transfers.thresholds` keeps its counts here, apart from the control database,
so that counting a transfer (a million refs for a large export, in one transaction)
never holds the lock that registrations, principals and grants need.
"""
