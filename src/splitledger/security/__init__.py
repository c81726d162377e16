"""Security adapters: encryption of sensitive fields."""
