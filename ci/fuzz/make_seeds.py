#!/usr/bin/env python3
"""Writes the seed corpora (ci/fuzz/corpus/TARGET/*): a few valid
encodings of every message kind, laid out as docs/DATA-PROTOCOL.md,
docs/SHORT-CIRCUIT.md and docs/METASTORE.md describe them. The seeds are
checked in; rerun this after a layout changes."""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def u8(v): return struct.pack("<B", v)
def u16(v): return struct.pack("<H", v)
def u32(v): return struct.pack("<I", v)
def u64(v): return struct.pack("<Q", v)
def i64(v): return struct.pack("<q", v)
def s(v): b = v.encode(); return u16(len(b)) + b


def frame(kind, body=b""):
    return b"EDDY" + u8(1) + u8(kind) + u16(0) + u32(len(body)) + body


def read_req(block=1 << 24, off=0, ln=100, blen=100, foff=0, rt=0, mount=0, key=""):
    return u64(block) + u64(off) + u64(ln) + u64(blen) + u64(foff) + u8(rt) + u64(mount) + s(key)


def write_open(fid=5, bs=1 << 20, wt=1, mount=0, key=""):
    return u64(fid) + u64(bs) + u8(wt) + u64(mount) + s(key)


def lease(*items):
    return u16(len(items)) + b"".join(u16(len(i)) + i for i in items)


def lease_ok(ttl, *grants):
    return u64(ttl) + u16(len(grants)) + b"".join(
        u64(b) + u64(l) + u64(n) + u16(c) + s(m) for b, l, n, c, m in grants)


def release(*ids): return u16(len(ids)) + b"".join(u64(i) for i in ids)
def stats_ok(*kv): return u16(len(kv)) + b"".join(s(k) + u64(v) for k, v in kv)
def error(code, msg): return u16(code) + s(msg)
def write_ok(n, blocks, fp): return u64(n) + u32(blocks) + s(fp)


FRAMES = {
    "read": frame(1, read_req()),
    "read_ufs": frame(1, read_req(off=10, ln=20, blen=4096, rt=2, mount=3, key="dir/f.parquet")),
    "load": frame(6, read_req(rt=1, mount=1, key="k")),
    "write_session": frame(2, write_open()) + frame(3, b"hello") + frame(4, u64(5)),
    "write_through": frame(2, write_open(wt=2, mount=1, key="a/b")) + frame(5),
    "stats": frame(7),
    "lease": frame(8, lease(read_req(), read_req(block=(2 << 24) | 1))),
    "release": frame(9, release(1, 2, 3)),
    "segment": frame(10, u64(1 << 20)) + frame(11, u64(1) + u64(4096)),
    "read_ok": frame(64, u64(5)) + b"hello",
    "ok": frame(65, u64(0)),
    "write_ok": frame(66, write_ok(5, 1, "5:1700000000000")),
    "stats_ok": frame(67, stats_ok(("blocks", 3), ("bytes", 300))),
    "lease_ok": frame(68, lease_ok(30000, (1 << 24, 1, 100, 0, ""), (2 << 24, 0, 0, 5, "not cached"))),
    "segment_ok": frame(69, u64(7) + u64(1 << 20)),
    "error": frame(127, error(5, "block 16777216 is not cached")),
}

SHORTCIRCUIT = {
    # side 0: what the worker reads; side 1: what the client reads (second
    # byte: descriptors that came with the frame).
    "lease": b"\x00\x00" + frame(9, release(4)) + frame(8, lease(read_req())),
    "lease_batch": b"\x00\x00" + frame(8, lease(*[read_req(block=i << 24) for i in range(1, 9)])),
    "stats": b"\x00\x00" + frame(7),
    "write": b"\x00\x00" + frame(2, write_open()) + frame(10, u64(1 << 20))
    + frame(11, u64(1) + u64(5)) + frame(4, u64(5)),
    "cancel": b"\x00\x00" + frame(2, write_open(wt=4, mount=2, key="x")) + frame(5),
    "lease_ok": b"\x01\x01" + frame(68, lease_ok(30000, (1 << 24, 1, 100, 0, ""))),
    "lease_ok_disk": b"\x01\x02" + frame(68, lease_ok(1000, (1 << 24, 1, 100, 0, "SSD"), (2 << 24, 2, 7, 0, ""))),
    "lease_refused": b"\x01\x00" + frame(68, lease_ok(1000, (1 << 24, 0, 0, 9, "no space"))),
    "segment_ok": b"\x01\x01" + frame(69, u64(3) + u64(1 << 20)),
    "write_ok": b"\x01\x00" + frame(65, u64(0)) + frame(66, write_ok(5, 1, "")),
    "stats_ok": b"\x01\x00" + frame(67, stats_ok(("leases", 1))),
    "error": b"\x01\x00" + frame(127, error(2, "bad request")),
}

SEP = b"|R|\n"


def inode(id, parent, flags, name, length=0, version=2, fp=b"\0" * 16):
    b = u8(version) + u64(id) + u64(parent) + u8(flags) + u64(length) + u64(64 << 20)
    b += i64(1700000000000) + i64(1600000000000) + u32(0o755) + i64(-1) + u8(0)
    b += u32(1) + u32(3) + s(name) + s("alice") + s("staff")
    return b + (s("12:34") if version == 1 else fp)


def mount(path, id, uri, opts=(), ro=0, sync=-1):
    b = u8(1) + u64(id) + u8(ro) + i64(sync) + s(uri) + u16(len(opts))
    for k, v in opts:
        b += s(k) + s(v)
    return path.encode() + b"\0" + b


def records(*recs):
    return SEP.join(recs)


ROOT_DIR = b"\0" + inode(1, 0, 1, "")
METASTORE = {
    "namespace": records(ROOT_DIR, b"\0" + inode(2, 1, 1, "dir"),
                         b"\0" + inode(3, 2, 2 | 4, "f", length=1000, fp=b"\x11" * 16),
                         b"\1" + mount("/", 1, "/tmp/ufs"),
                         b"\1" + mount("/s3", 2, "s3://bucket/p", [("region", "eu-west-1")], ro=1, sync=0)),
    "inode_v1": records(ROOT_DIR, b"\0" + inode(2, 1, 2, "old", version=1), b"\1" + mount("/", 1, "/u")),
    "intents": records(ROOT_DIR, b"\1" + mount("/", 1, "/u"),
                       b"\2" + u8(1) + u8(1) + s("/a/b") + s("/a/c"),
                       b"\2" + u8(1) + u8(2) + s("/d")),
}

PATHS = {
    "root": b"/", "file": b"/a/b/c.txt", "dots": b"/a/./b/../c//d/", "uri": b"eddy://localhost:19998/x/y",
    "uri_root": b"eddy://host", "unicode": "/données/文件".encode(), "escape": b"/..", "relative": b"a/b",
    "ufs_key": b"dir/sub/file",
}


def write(target, seeds):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)


def main():
    write("frame", FRAMES)
    write("shortcircuit", SHORTCIRCUIT)
    write("metastore", METASTORE)
    write("path", PATHS)
    with open(os.path.join(ROOT, "cli", "etc", "eddy.toml"), "rb") as f:
        sample = f.read()
    write("config", {
        "sample": sample,
        "tiers": b'[worker]\nmemory_capacity = 1048576\nio_engine = "pread"\n'
                 b'[[worker.tiers]]\nalias = "SSD"\ndirs = ["/a", "/b"]\nquotas = [1, 2]\n',
        "ufs": b'[ufs.s3]\nregion = "eu-west-1"\nallow_http = true\nretries = 0\n[ufs.azure]\naccount = "a"\n',
        "client": b'[client]\nmaster = "10.0.0.1:19998"\nshort_circuit = false\n[master]\ndefault_block_size = 4096\n',
    })


if __name__ == "__main__":
    main()
