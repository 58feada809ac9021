"""Load generator and server race for Cobra-protocol servers (issue #7); ``python -m bench --help``."""
