"""The home end on a plain Linux router (`sixbroker router`): options -> plans -> the Linux appliers."""

from sixbroker.core.errors import CODES

# this room's error codes and their words (core/errors.py holds the rest)
CODES.update({
    "CONFIG_NOT_FOUND": "The configuration file cannot be read",
    "NO_TUNNELS": "The configuration has no enabled `config tunnel` section",
    "NO_UPDATER": "No tunnel in the configuration has an updater: set tunnelid and updatekey",
})
