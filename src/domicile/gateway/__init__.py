"""The security gateway: authenticate → decide → custody → vault → transform → record."""
