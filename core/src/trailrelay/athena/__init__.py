"""Athena over the trail's bucket: the table (partition projection) and saved hunting queries.

Data events usually stay out of the SIEM (cost); this keeps them searchable the same day.
Modules: ``ddl`` (the ``CREATE TABLE`` and its projection over account, region and day),
``queries`` (hunting queries from the detection pack), ``cli`` (``trailrelay athena ddl``).
"""

from __future__ import annotations
