"""The trailrelay command line."""
