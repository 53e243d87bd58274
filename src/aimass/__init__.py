"""aimass: one registry, one inference interface, every framework."""
