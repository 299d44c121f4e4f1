"""The trailrelay command line."""

import os

# pydantic looks for plugins by scanning every installed distribution's entry points when the
# first model is built: ~14 ms of every start-up, for plugins that would only instrument our
# own config models. The command line opts out unless the operator set the variable (an empty
# value turns plugins back on).
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
