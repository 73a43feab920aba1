"""The DER walker, now part of espconn.x509 (one module: a check always loads
both).  Re-exported here for the tests and host code that name it."""

from .x509 import cert_names, check, equal, expect, natural, read, uint  # noqa: F401
