"""adapters/payment."""
