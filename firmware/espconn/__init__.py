"""espconn: Espressif's ESP8266 SDK SSL API (espconn_secure_*) for MicroPython.

Nothing heavy runs at import: submodules (x509, castore, ...) load when first
used, so the host tools can import the shared codecs (``espconn.binfmt``)
without pulling in the device API.
"""
