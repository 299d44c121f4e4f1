"""The crash, fault, soak and supply-chain harness behind ``docs/RELIABILITY.md``.

It runs ``trailrelay forward`` as real subprocesses against moto (S3, SQS) in server mode and
the three connectors' local stand-ins (Splunk HEC with acknowledgement, Elasticsearch, the
Azure Logs Ingestion API behind a local Entra ID), all on 127.0.0.1; kills the forwarder with
SIGKILL at seeded random moments, injects faults into the stand-ins, and compares the eventIDs
each stand-in stored (and each dead-letter entry) with the input. ``python -m reliability``
runs it and writes the figures; ``tests/reliability/`` runs a short version in CI.
"""
