"""models/discriminator."""
