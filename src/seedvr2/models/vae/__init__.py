"""models/vae."""
