"""MLScope exporters: a shared runtime plus one module per exporter."""

__version__ = "0.1.0"
