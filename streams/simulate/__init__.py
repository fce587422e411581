"""The simulator: a seeded customer base (world), its events as messages (wire), the command."""
