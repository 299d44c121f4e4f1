"""Built-in sinks: an NDJSON file, standard output, and an encoded-payload folder."""
