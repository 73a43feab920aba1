# The ESP8266 port's `network` module for the virtual board.
#
# The virtual board's only network is the host's loopback: the station is
# always "connected" (once active), and both interfaces report 127.0.0.1, the
# one address a virtual board may talk to.  Sockets are the unix port's real
# ones.  Names and signatures follow typings/network.pyi (ESP8266 port); the
# MAC is the one the board's serial loader reports from its efuses
# (ESPSSL_VBOARD_MAC, hex, else the loader's default).
from os import getenv as _getenv  # the unix port's (the board's os has none)

from micropython import const

STA_IF = const(0)
AP_IF = const(1)

STAT_IDLE = const(0)
STAT_CONNECTING = const(1)
STAT_WRONG_PASSWORD = const(2)
STAT_NO_AP_FOUND = const(3)
STAT_CONNECT_FAIL = const(4)
STAT_GOT_IP = const(5)

AUTH_OPEN = const(0)
AUTH_WEP = const(1)
AUTH_WPA_PSK = const(2)
AUTH_WPA2_PSK = const(3)
AUTH_WPA_WPA2_PSK = const(4)

MODE_11B = const(1)
MODE_11G = const(2)
MODE_11N = const(3)

_LOOPBACK = ("127.0.0.1", "255.0.0.0", "127.0.0.1", "127.0.0.1")
_DEFAULT_MAC = "18fe34a1b2c3"  # Espressif OUI; = loader.DEFAULT_MAC

_hostname = "espressif"
_country = "XX"
_phy = 3  # MODE_11N
_wlans = [None, None]  # one object per interface, as the port returns


def _mac(interface):
    import binascii

    mac = bytearray(binascii.unhexlify(_getenv("ESPSSL_VBOARD_MAC") or _DEFAULT_MAC))
    if interface == AP_IF:
        mac[0] |= 2  # the SDK's softAP MAC: the station MAC, locally administered
    return bytes(mac)


class WLAN:
    def __new__(cls, interface_id=STA_IF):
        if interface_id not in (STA_IF, AP_IF):
            raise ValueError("invalid WLAN interface identifier")
        w = _wlans[interface_id]
        if w is None:
            w = object.__new__(cls)
            w._if = interface_id
            w._active = interface_id == AP_IF  # the ESP8266 starts with its AP on
            w._ssid = "MicroPython-a1b2c3" if interface_id == AP_IF else ""
            w._key = ""
            w._connected = False
            w._ip = _LOOPBACK
            w._cfg = {"channel": 1, "hidden": False, "security": AUTH_WPA_WPA2_PSK, "reconnects": -1, "txpower": 20.5}
            _wlans[interface_id] = w
        return w

    def __init__(self, interface_id=STA_IF):
        pass

    def active(self, is_active=None):
        """Get, or set, whether the interface is up."""
        if is_active is None:
            return self._active
        self._active = bool(is_active)
        if not self._active:
            self._connected = False
        return None

    def connect(self, ssid=None, password=None, *, bssid=None):
        """Join a network: on the virtual board every network is the loopback."""
        if self._if != STA_IF:
            raise OSError("STA required")
        if not self._active:
            raise OSError("STA must be active")
        if ssid is not None:
            self._ssid = ssid
            self._key = password or ""
        self._connected = True

    def disconnect(self):
        self._connected = False

    def isconnected(self):
        """True once the station is active and connected (immediately, here)."""
        if self._if == AP_IF:
            return False  # no station has joined the virtual AP
        return self._active and self._connected

    def status(self, param=None):
        """STAT_* of the station link, or status("rssi") in dBm."""
        if param is not None:
            if param == "rssi":
                return -40
            raise ValueError("unknown status param")
        if self._if == STA_IF and self._active and self._connected:
            return STAT_GOT_IP
        return STAT_IDLE

    def ifconfig(self, ip_mask_gateway_dns=None):
        """(ip, netmask, gateway, dns): the loopback.  Setting it is accepted and reported back."""
        if ip_mask_gateway_dns is None:
            return self._ip
        self._ip = tuple(ip_mask_gateway_dns)
        return None

    def ipconfig(self, *args, **kwargs):
        if args:
            k = args[0]
            if k == "addr4":
                return (self._ip[0], self._ip[1])
            if k == "gw4":
                return self._ip[2]
            if k == "dhcp4":
                return True
            raise ValueError("unexpected key")
        return None

    def scan(self):
        """No radio: the virtual board sees no access points."""
        return []

    def config(self, *args, **kwargs):
        """config("mac"), config("ssid"), ...; config(key=value) sets."""
        if args:
            if len(args) != 1 or kwargs:
                raise TypeError("can query only one param")
            k = args[0]
            if k == "mac":
                return _mac(self._if)
            if k in ("ssid", "essid"):
                return self._ssid
            if k == "key":
                return self._key
            if k in ("hostname", "dhcp_hostname"):
                return _hostname
            if k == "pm":
                return 0
            if k in self._cfg:
                return self._cfg[k]
            raise ValueError("unknown config param")
        for k in kwargs:
            v = kwargs[k]
            if k in ("ssid", "essid"):
                self._ssid = v
            elif k in ("key", "password"):
                self._key = v
            elif k in ("authmode", "security"):
                self._cfg["security"] = v
            elif k in self._cfg:
                self._cfg[k] = v
            elif k not in ("mac", "hostname", "dhcp_hostname", "pm", "protocol"):
                raise ValueError("unknown config param")
        return None


def hostname(name=None):
    """Get or set the DHCP hostname."""
    global _hostname
    if name is None:
        return _hostname
    _hostname = name
    return None


def country(code=None):
    global _country
    if code is None:
        return _country
    _country = code
    return None


def phy_mode(mode=None):
    """Get or set the PHY mode (MODE_11B/G/N); no effect here."""
    global _phy
    if mode is None:
        return _phy
    _phy = mode
    return None


def ipconfig(*args, **kwargs):
    if args and args[0] == "prefer":
        return 4
    return None
