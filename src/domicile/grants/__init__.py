"""Just-in-time grants: time-limited, purpose-bound access, approved in steps, revocable."""
