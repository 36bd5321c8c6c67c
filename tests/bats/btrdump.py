#!/usr/bin/python3
"""btrdump.py: an independent reader of the bt record format, written from bt-record(5)
alone, for the Bats tests. It prints one line per record:
    INDEX KIND HxWxC label=L id=I soft=a,b sha=PAYLOAD_SHA1_PREFIX
then "classes: NAME..." and "footer: yes|no". It checks every CRC and the trailer and
exits 1 on any disagreement with the spec. Usage: btrdump.py FILE [--payload N OUT]
(--payload writes record N's payload bytes to OUT)."""
import hashlib
import struct
import sys
import zlib

KINDS = {1: "jpeg", 2: "png", 3: "raw", 4: "f32", 5: "f16"}


def fail(msg):
    print("btrdump: " + msg, file=sys.stderr)
    sys.exit(1)


def main():
    path = sys.argv[1]
    want = None
    if len(sys.argv) == 5 and sys.argv[2] == "--payload":
        want = (int(sys.argv[3]), sys.argv[4])
    data = open(path, "rb").read() if path != "-" else sys.stdin.buffer.read()
    if data[:8] != b"\x89BTR\r\n\x1a\n":
        fail("bad magic")
    version, hsize = struct.unpack_from("<II", data, 8)
    if version != 1:
        fail("version %d" % version)
    pos = hsize
    offsets = []
    footer = False
    classes = []
    i = 0
    while pos < len(data):
        marker = data[pos:pos + 4]
        if marker == b"BTRR":
            kind, ndim, nsoft, size, rid, label = struct.unpack_from("<BBHQQi", data, pos + 4)
            shape = struct.unpack_from("<4I", data, pos + 28)
            soft = struct.unpack_from("<%df" % nsoft, data, pos + 48)
            start = pos + 48 + 4 * nsoft
            payload = data[start:start + size]
            if len(payload) != size:
                fail("record %d truncated" % i)
            (crc,) = struct.unpack_from("<I", data, start + size)
            if zlib.crc32(data[pos:start + size]) != crc:
                fail("record %d: crc" % i)
            dims = "x".join(str(d) for d in shape[:ndim])
            print("%d %s %s label=%d id=%d soft=%s sha=%s" % (
                i, KINDS.get(kind, "?"), dims, label, rid,
                ",".join("%g" % s for s in soft) or "-",
                hashlib.sha1(payload).hexdigest()[:12]))
            if want and want[0] == i:
                open(want[1], "wb").write(payload)
            offsets.append(pos)
            pos = start + size + 4
            i += 1
        elif marker == b"BTRX":
            (count,) = struct.unpack_from("<Q", data, pos + 8)
            offs = list(struct.unpack_from("<%dQ" % count, data, pos + 16))
            if offs != offsets:
                fail("footer offsets disagree")
            at = pos + 16 + 8 * count
            (nc,) = struct.unpack_from("<I", data, at)
            at += 4
            for _ in range(nc):
                (ln,) = struct.unpack_from("<I", data, at)
                classes.append(data[at + 4:at + 4 + ln].decode())
                at += 4 + ln
            (crc,) = struct.unpack_from("<I", data, at)
            if zlib.crc32(data[pos:at]) != crc:
                fail("footer crc")
            trailer = data[at + 4:]
            if len(trailer) != 24 or trailer[20:] != b"BTRE":
                fail("trailer")
            foff, tcount, tcrc = struct.unpack_from("<QQI", trailer, 0)
            if foff != pos or tcount != count or zlib.crc32(trailer[:16]) != tcrc:
                fail("trailer fields")
            footer = True
            break
        else:
            fail("bad marker at %d" % pos)
    print("classes: " + " ".join(classes))
    print("footer: " + ("yes" if footer else "no"))


main()
