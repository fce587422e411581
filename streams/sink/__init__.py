"""Sinks: deliver published signals to the people and systems that act on them."""
