"""autoinfer: new data in a bucket becomes predictions next to it."""

__version__ = "0.1.0"
