"""SSL demo in the style of the NONOS SDK's IOT_Demo (user_esp_platform.c).

The SDK demo picks its role with compile-time switches; here they are the
constants below.  `espssl deploy --examples` puts this file on the board next
to the espconn package (as source in /lib, to edit; compiled into the ROMFS on
a FLASH_2M_ROMFS firmware, where the switches are set as module attributes):

    import ssl_demo; ssl_demo.SERVER_IP = (192, 168, 1, 23); ssl_demo.user_init()

CLIENT_SSL_ENABLE: connect to SERVER_IP:SERVER_PORT, check the server's
certificate against the CA store (esp_ca_cert.bin: `espssl ca-bin build`, then
`espssl flash-ca`) at CA_SECTOR, send one request line, print what comes back,
disconnect.  SERVER_SSL_ENABLE: listen on SERVER_PORT with the certificate and
key (esp_cert_private_key.bin, `espssl flash-cert`) at CERT_SECTOR and echo
what a client sends.  CA_SECTOR/CERT_SECTOR None: the sectors `espssl
flash-ca`/`flash-cert` use by default on this board (`default_sectors()`).

Callbacks fire by themselves (a machine.Timer drives them), so the REPL stays
free; scripts may also call espconn_run(ms) to drive them and wait.
"""

from espconn import *

SERVER_SSL_ENABLE = False
CLIENT_SSL_ENABLE = True
SERVER_IP = (127, 0, 0, 1)  # the host running the TLS peer; 127.0.0.1 for the unix port
SERVER_PORT = 8443
CA_SECTOR = None  # esp_ca_cert.bin: espconn_secure_ca_enable(ESPCONN_CLIENT, CA_SECTOR)
CERT_SECTOR = None  # esp_cert_private_key.bin for the server role
CA_CHECK = True
SSL_SIZE = 4096  # espconn_secure_set_size: 2048..8192
REQUEST = b"GET / HTTP/1.0\r\n\r\n"

user_conn = None  # the demo's struct espconn (module global, as in the C demo)
received = bytearray()  # what the demo got, for whoever drives it


def default_sectors():
    """(CA sector, certificate sector) of espssl's board profile for this board
    (boards/README.md): 1 MiB 0x98/0x97; 2 MiB+ 0xF0/0xF1; with a ROMFS partition
    (FLASH_2M_ROMFS, which holds 0xB0..0xFF) 0xAE/0xAF."""
    import esp

    if esp.flash_size() < 0x200000:
        return 0x98, 0x97
    try:
        import vfs

        if vfs.rom_ioctl(1) > 0:  # type: ignore[attr-defined]
            return 0xAE, 0xAF
    except (ImportError, AttributeError, OSError):
        pass
    return 0xF0, 0xF1


def user_esp_platform_recv_cb(arg, pusrdata, length):
    received.extend(pusrdata)
    print("ssl_demo: recv", length, "bytes")
    if SERVER_SSL_ENABLE:
        espconn_secure_send(arg, pusrdata, length)  # echo (one piece at a time, <= 1024 bytes)
    elif len(received) >= len(REQUEST):
        espconn_secure_disconnect(arg)


def user_esp_platform_sent_cb(arg):
    print("ssl_demo: sent")


def user_esp_platform_connect_cb(arg):
    print("ssl_demo: connected to %d.%d.%d.%d:%d" % (tuple(arg.proto.tcp.remote_ip) + (arg.proto.tcp.remote_port,)))
    espconn_regist_recvcb(arg, user_esp_platform_recv_cb)
    espconn_regist_sentcb(arg, user_esp_platform_sent_cb)
    if CLIENT_SSL_ENABLE:
        espconn_secure_send(arg, REQUEST)


def user_esp_platform_discon_cb(arg):
    print("ssl_demo: disconnected")


def user_esp_platform_recon_cb(arg, err):
    print("ssl_demo: reconnect callback, error", err, espconn_secure_last_error(arg))


def user_init():
    global user_conn
    ca_sector, cert_sector = default_sectors()
    ca_sector = ca_sector if CA_SECTOR is None else CA_SECTOR
    cert_sector = cert_sector if CERT_SECTOR is None else CERT_SECTOR
    user_conn = conn = espconn()
    conn.type = ESPCONN_TCP
    conn.state = ESPCONN_NONE
    conn.proto.tcp = tcp = esp_tcp()
    espconn_regist_connectcb(conn, user_esp_platform_connect_cb)
    espconn_regist_reconcb(conn, user_esp_platform_recon_cb)
    espconn_regist_disconcb(conn, user_esp_platform_discon_cb)
    if SERVER_SSL_ENABLE:
        tcp.local_port = SERVER_PORT
        tcp.local_ip = bytes(SERVER_IP)  # 0.0.0.0 on a board: all interfaces
        espconn_regist_recvcb(conn, user_esp_platform_recv_cb)
        espconn_regist_sentcb(conn, user_esp_platform_sent_cb)
        espconn_secure_set_size(ESPCONN_SERVER, SSL_SIZE)
        espconn_secure_cert_req_enable(ESPCONN_SERVER, cert_sector)
        r = espconn_secure_accept(conn)
        print("ssl_demo: espconn_secure_accept", r)
    if CLIENT_SSL_ENABLE:
        tcp.remote_ip = bytes(SERVER_IP)
        tcp.remote_port = SERVER_PORT
        tcp.local_port = espconn_port()
        espconn_secure_set_size(ESPCONN_CLIENT, SSL_SIZE)
        if CA_CHECK:
            print("ssl_demo: CA store at sector 0x%X" % ca_sector)
            if not espconn_secure_ca_enable(ESPCONN_CLIENT, ca_sector):
                print("ssl_demo: ca_enable refused:", espconn_secure_last_error())
        else:
            espconn_secure_ca_disable(ESPCONN_CLIENT)
        r = espconn_secure_connect(conn)
        print("ssl_demo: espconn_secure_connect", r)
    return conn
