"""trailrelay sink for Splunk HTTP Event Collector."""
