"""Moving records from a source to sinks: batching, retries, acknowledgement, dead letters."""
