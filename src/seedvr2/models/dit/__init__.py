"""models/dit."""
