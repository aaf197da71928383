"""The embedding model, its configuration and processors (these files double as Hub remote code)."""
