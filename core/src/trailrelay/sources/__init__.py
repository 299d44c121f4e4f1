"""Where records come from: local files, S3 listings, SQS notifications."""
