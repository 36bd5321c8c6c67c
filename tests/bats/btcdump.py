#!/usr/bin/python3
"""btcdump.py: an independent reader of the bt checkpoint format, written from
bt-checkpoint(5) alone, for the Bats tests. It checks everything the page says a reader
checks and exits 1 with "btcdump: WHAT" on any disagreement. It prints:
    checkpoint version V, N bytes, S sections
    section TAG LENGTH            (for every section, in file order)
      key=value                   (text sections: SPEC, STAT, RCPE)
      NAME                        (CLAS: one class name per line)
      LINE                        (METR: one JSON line per line)
    tensor NAME DTYPE DxDxD BYTES (for every directory entry, in order)
Usage: btcdump.py FILE [--tensor NAME]  (--tensor prints only that tensor's values, one
per line, %.9g)."""
import struct
import sys
import zlib

MAGIC = b"\x89BTC\r\n\x1a\n"
KNOWN = ["SPEC", "CLAS", "STAT", "RCPE", "METR", "TDIR", "TDAT"]
DTYPES = {0: ("float32", 4), 1: ("float16", 2), 2: ("bfloat16", 2)}
KEYCHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


def fail(msg):
    print("btcdump: " + msg, file=sys.stderr)
    sys.exit(1)


def text_lines(tag, payload):
    if payload and not payload.endswith(b"\n"):
        fail("%s does not end with a line feed" % tag)
    seen = set()
    out = []
    for line in payload.split(b"\n")[:-1] if payload else []:
        if b"=" not in line:
            fail("%s: line without '='" % tag)
        key, value = line.split(b"=", 1)
        key = key.decode("ascii", "replace")
        if not key or not set(key) <= KEYCHARS:
            fail("%s: bad key %r" % (tag, key))
        if key in seen:
            fail("%s: key %s twice" % (tag, key))
        if b"\0" in value:
            fail("%s: NUL byte" % tag)
        seen.add(key)
        out.append(key + "=" + value.decode("utf-8"))
    return out


def classes(payload):
    if len(payload) < 4:
        fail("CLAS too short")
    (count,) = struct.unpack_from("<I", payload, 0)
    pos, names = 4, []
    for i in range(count):
        if pos + 4 > len(payload):
            fail("CLAS ends inside class %d" % i)
        (n,) = struct.unpack_from("<I", payload, pos)
        pos += 4
        if pos + n > len(payload):
            fail("CLAS: class %d runs past the section" % i)
        names.append(payload[pos:pos + n].decode("utf-8"))
        pos += n
    if pos != len(payload):
        fail("CLAS has bytes after its last class")
    return names


def tensors(tdir, tdat):
    if len(tdir) < 4:
        fail("TDIR too short")
    (count,) = struct.unpack_from("<I", tdir, 0)
    pos, end, out, names = 4, 0, [], set()
    for i in range(count):
        if pos + 2 > len(tdir):
            fail("TDIR ends inside tensor %d" % i)
        (n,) = struct.unpack_from("<H", tdir, pos)
        if n == 0 or pos + 2 + n + 2 > len(tdir):
            fail("TDIR ends inside tensor %d" % i)
        name = tdir[pos + 2:pos + 2 + n].decode("utf-8")
        pos += 2 + n
        dtype, ndim = tdir[pos], tdir[pos + 1]
        pos += 2
        if dtype not in DTYPES:
            fail("tensor %s: dtype %d" % (name, dtype))
        if not 1 <= ndim <= 4:
            fail("tensor %s: ndim %d" % (name, ndim))
        if pos + 8 * ndim + 20 > len(tdir):
            fail("TDIR ends inside tensor %s" % name)
        shape = struct.unpack_from("<%dQ" % ndim, tdir, pos)
        pos += 8 * ndim
        offset, nbytes, crc = struct.unpack_from("<QQI", tdir, pos)
        pos += 20
        size = DTYPES[dtype][1]
        for s in shape:
            if s < 1:
                fail("tensor %s: a size of 0" % name)
            size *= s
        if size != nbytes:
            fail("tensor %s: %d bytes, its shape says %d" % (name, nbytes, size))
        if offset % 64:
            fail("tensor %s: offset %d not a multiple of 64" % (name, offset))
        if offset < end or offset + nbytes > len(tdat):
            fail("tensor %s: outside its place in TDAT" % name)
        end = offset + nbytes
        if name in names:
            fail("tensor %s twice" % name)
        names.add(name)
        data = tdat[offset:offset + nbytes]
        if zlib.crc32(data) != crc:
            fail("tensor %s: crc" % name)
        out.append((name, DTYPES[dtype][0], shape, data))
    if pos != len(tdir):
        fail("TDIR has bytes after its last tensor")
    return out


def values(dtype, data):
    if dtype == "float32":
        return struct.unpack("<%df" % (len(data) // 4), data)
    if dtype == "float16":
        return struct.unpack("<%de" % (len(data) // 2), data)
    halves = struct.unpack("<%dH" % (len(data) // 2), data)
    return [struct.unpack("<f", struct.pack("<I", h << 16))[0] for h in halves]


def main():
    if len(sys.argv) not in (2, 4) or (len(sys.argv) == 4 and sys.argv[2] != "--tensor"):
        fail("usage: btcdump.py FILE [--tensor NAME]")
    data = open(sys.argv[1], "rb").read()
    if data[:8] != MAGIC[:len(data[:8])] or not data:
        fail("not a bt checkpoint (bad magic)")
    if len(data) < 32:
        fail("truncated: %d bytes" % len(data))
    version, hsize, fsize, nsec, hcrc = struct.unpack_from("<IIQII", data, 8)
    if zlib.crc32(data[:28]) != hcrc:
        fail("header crc")
    if version != 1:
        fail("version %d" % version)
    if hsize != 32:
        fail("header size %d" % hsize)
    if len(data) < fsize:
        fail("truncated: %d bytes, the header says %d" % (len(data), fsize))
    if len(data) > fsize:
        fail("%d bytes, the header says %d" % (len(data), fsize))
    pos, found, order = 32, {}, []
    for i in range(nsec):
        start = (pos + 63) // 64 * 64
        if any(data[pos:start]):
            fail("nonzero padding before section %d" % i)
        if start + 16 > len(data):
            fail("section %d past the end" % i)
        tag = data[start:start + 4].decode("latin-1")
        crc, length = struct.unpack_from("<IQ", data, start + 4)
        payload = data[start + 16:start + 16 + length]
        if len(payload) != length:
            fail("section %s runs past the end" % tag)
        if zlib.crc32(payload) != crc:
            fail("section %s: crc" % tag)
        if tag in KNOWN:
            if tag in found:
                fail("section %s twice" % tag)
            found[tag] = payload
        order.append((tag, length))
        pos = start + 16 + length
    if pos != len(data):
        fail("bytes after the last section")
    for tag in KNOWN:
        if tag not in found:
            fail("no %s section" % tag)
    text = {tag: text_lines(tag, found[tag]) for tag in ("SPEC", "STAT", "RCPE")}
    names = classes(found["CLAS"])
    if b"\0" in found["METR"]:
        fail("METR: NUL byte")
    metrics = found["METR"].decode("utf-8").splitlines()
    tens = tensors(found["TDIR"], found["TDAT"])

    if len(sys.argv) == 4:
        for name, dtype, shape, raw in tens:
            if name == sys.argv[3]:
                for v in values(dtype, raw):
                    print("%.9g" % v)
                return
        fail("no tensor %s" % sys.argv[3])
    print("checkpoint version %d, %d bytes, %d sections" % (version, len(data), nsec))
    for tag, length in order:
        print("section %s %d" % (tag, length))
        if tag in text:
            for line in text[tag]:
                print("  " + line)
        elif tag == "CLAS":
            for n in names:
                print("  " + n)
        elif tag == "METR":
            for line in metrics:
                print("  " + line)
    for name, dtype, shape, raw in tens:
        print("tensor %s %s %s %d" % (name, dtype, "x".join(str(s) for s in shape), len(raw)))


main()
