"""Reports only read results: text for people, JSON for programs."""
