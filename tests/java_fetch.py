"""A Java class file that opens the URL it is given (`java -cp DIR Fetch https://...`), written byte by byte.

A Java runtime without a compiler (openjdk-17-jre-headless) can still run a class file, so the test
writes one: `new java.net.URL(args[0]).openStream().close()`. For an https URL that is a TLS
handshake checked against the runtime's default trust store (/etc/ssl/certs/java/cacerts on
Debian); a failure ends the JVM with the exception (exit 1). Class file version 49 needs no stack
map frames; the code has no branches anyway.
"""

from __future__ import annotations

import struct


def fetch_class() -> bytes:
    pool: list[bytes] = []

    def add(entry: bytes) -> int:
        pool.append(entry)
        return len(pool)

    def utf8(text: str) -> int:
        data = text.encode()
        return add(b"\x01" + struct.pack(">H", len(data)) + data)

    def klass(name: str) -> int:
        return add(b"\x07" + struct.pack(">H", utf8(name)))

    def method(owner: int, name: str, descriptor: str) -> int:
        name_and_type = add(b"\x0c" + struct.pack(">HH", utf8(name), utf8(descriptor)))
        return add(b"\x0a" + struct.pack(">HH", owner, name_and_type))

    this, base = klass("Fetch"), klass("java/lang/Object")
    url, stream = klass("java/net/URL"), klass("java/io/InputStream")
    init = method(url, "<init>", "(Ljava/lang/String;)V")
    open_stream = method(url, "openStream", "()Ljava/io/InputStream;")
    close = method(stream, "close", "()V")
    main_name, main_type, code_name = utf8("main"), utf8("([Ljava/lang/String;)V"), utf8("Code")
    code = (b"\xbb" + struct.pack(">H", url)            # new java/net/URL
            + b"\x59"                                      # dup
            + b"\x2a\x03\x32"                              # aload_0, iconst_0, aaload: args[0]
            + b"\xb7" + struct.pack(">H", init)            # invokespecial URL.<init>
            + b"\xb6" + struct.pack(">H", open_stream)     # invokevirtual URL.openStream
            + b"\xb6" + struct.pack(">H", close)           # invokevirtual InputStream.close
            + b"\xb1")                                     # return
    code_attribute = struct.pack(">HHI", 4, 1, len(code)) + code + struct.pack(">HH", 0, 0)
    main = (struct.pack(">HHHH", 0x0009, main_name, main_type, 1)  # public static, one attribute
            + struct.pack(">HI", code_name, len(code_attribute)) + code_attribute)
    return (b"\xca\xfe\xba\xbe" + struct.pack(">HHH", 0, 49, len(pool) + 1) + b"".join(pool)
            + struct.pack(">HHHHHH", 0x0021, this, base, 0, 0, 1) + main + struct.pack(">H", 0))
