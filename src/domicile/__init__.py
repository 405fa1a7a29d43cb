"""Domicile: personal data kept in its home region, reached only through a gateway."""

__version__ = "0.1.0"

__all__ = ["Client", "__version__"]


def __getattr__(name: str) -> object:
    # The client is imported lazily so `import domicile` stays cheap and
    # builds nothing (the monitor imports pure submodules only).
    if name == "Client":
        from domicile.client import Client

        return Client
    raise AttributeError(name)
