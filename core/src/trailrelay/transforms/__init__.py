"""What happens to records on the way: filtering (detection lives in trailrelay.detection)."""
