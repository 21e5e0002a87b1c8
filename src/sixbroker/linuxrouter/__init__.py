"""The home end on a plain Linux router (`sixbroker router`): options -> plans -> the Linux appliers."""
