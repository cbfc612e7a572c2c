"""``python -m gateway`` is the ``dvc-gateway`` command."""

from .cli import run

run()
