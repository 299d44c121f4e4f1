"""What happens to records on the way: filtering and high-risk tagging."""
