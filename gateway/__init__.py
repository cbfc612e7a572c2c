"""dvc-gateway: the provincial integration gateway."""

__version__ = "0.1.0"
