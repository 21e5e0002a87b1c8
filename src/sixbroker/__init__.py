"""sixbroker: be your own IPv6 tunnel broker (6in4, both ends)."""

# The one place the version lives: packages, the CLI and the LuCI app read it from here.
VERSION = "0.1.0"
