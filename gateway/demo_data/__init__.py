"""The sample catalogue, signed documents and trust material of ``dvc-gateway demo``, installed with the package."""
