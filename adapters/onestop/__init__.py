"""adapters/onestop."""
