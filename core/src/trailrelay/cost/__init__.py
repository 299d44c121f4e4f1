"""``trailrelay cost``: what a sample of your own CloudTrail would cost in each SIEM.

Records are read with core's readers, encoded by each installed connector's real encoder and
measured in each SIEM's billing unit (:mod:`.billing`) under several filter profiles
(:mod:`.profiles`), extrapolated with a stated error margin (:mod:`.estimate`) and priced
from a dated, sourced price table (:mod:`.prices`, ``prices.toml``).
"""
