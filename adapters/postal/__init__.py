"""adapters/postal."""
