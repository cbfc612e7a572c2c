"""adapters/national_portal."""
