"""Host name and IP address matching, now part of espconn.x509 (one module:
every check matches a name).  Re-exported here for the tests that name it."""

from .x509 import match_dns, parse_ip  # noqa: F401
