"""RSA PKCS#1 v1.5 verification, now part of espconn.x509 (one module: a check
always loads both).  Re-exported here for the tests that name it."""

from .x509 import MAX_BITS, SHA1, SHA256, bits, check_key, modexp, verify  # noqa: F401
