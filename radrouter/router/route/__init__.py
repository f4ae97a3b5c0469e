"""Route: a complete study's headers against the rules; the decision becomes jobs and forwards."""
