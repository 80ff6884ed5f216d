#!/usr/bin/env python3
"""Writes small capture files for edge cases the shared corpus lacks, and
their expected output from the installed tcpdump (4.99.3 was used):

    python3 make_crafted.py          # rewrite captures and CASES.tsv outputs

Each row of CASES.tsv is: capture, tcpdump arguments (without -r), expected
output file. The outputs were made with `TZ=UTC tcpdump ARGS -r CAPTURE`.
"""
import ipaddress
import os
import struct
import subprocess

A4 = bytes([192, 0, 2, 1])
B4 = bytes([198, 51, 100, 2])
A6 = ipaddress.IPv6Address("::ffff:192.0.2.1").packed
B6 = ipaddress.IPv6Address("2001:db8::1").packed
C6 = ipaddress.IPv6Address("fe80::1:0:0:2").packed


def tcp(sport=1000, dport=80, seq=0, ack=0, flags=0x10, opts=b"", payload=0, doff=None):
    if doff is None:
        doff = (20 + len(opts) + 3) // 4
    h = struct.pack(">HHIIBBHHH", sport, dport, seq, ack, doff << 4, flags, 100, 0, 0) + opts
    if doff * 4 > len(h):
        h += b"\0" * (doff * 4 - len(h))
    return h + b"x" * payload


def ip4(t, src=A4, dst=B4, tot=None, ihl=5, opts=b""):
    if tot is None:
        tot = ihl * 4 + len(t)
    return struct.pack(">BBHHHBBH", 0x40 | ihl, 0, tot, 1, 0x4000, 64, 6, 0) + src + dst + opts + t


def ip6(t, src=A6, dst=B6, plen=None, nh=6, ext=b""):
    if plen is None:
        plen = len(ext) + len(t)
    return struct.pack(">IHBB", 0x60000000, plen, nh, 64) + src + dst + ext + t


def eth(p, et=0x0800, vlans=()):
    h = b"\x02\0\0\0\0\x01\x02\0\0\0\0\x02"
    for v in vlans:
        h += struct.pack(">HH", 0x8100, v)
    return h + struct.pack(">H", et) + p


def sll(p, et=0x0800):
    return struct.pack(">HHH8sH", 0, 1, 6, b"\x02\0\0\0\0\x01\0\0", et) + p


def sll2(p, et=0x0800):
    return struct.pack(">HHIHBB8s", et, 0, 1, 1, 0, 6, b"\x02\0\0\0\0\x01\0\0") + p


def pcap(name, frames, link, nano=False, big=False):
    e = ">" if big else "<"
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    with open(name, "wb") as f:
        f.write(struct.pack(e + "IHHiIII", magic, 2, 4, 0, 0, 65535, link))
        for i, fr in enumerate(frames):
            data, cap, sec, frac = fr["data"], fr.get("cap"), fr.get("sec", 1000 + i), fr.get("frac", 0)
            d = data[:cap] if cap is not None else data
            f.write(struct.pack(e + "IIII", sec, frac, len(d), len(data)))
            f.write(d)


def block(btype, body):
    body += b"\0" * (-len(body) % 4)
    n = 12 + len(body)
    return struct.pack("<II", btype, n) + body + struct.pack("<I", n)


def opt(code, val):
    return struct.pack("<HH", code, len(val)) + val + b"\0" * (-len(val) % 4)


def pcapng(name, link, ifaces, packets):
    out = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    for tsresol, tsoffset in ifaces:
        o = b""
        if tsresol is not None:
            o += opt(9, bytes([tsresol]))
        if tsoffset is not None:
            o += opt(14, struct.pack("<q", tsoffset))
        if o:
            o += opt(0, b"")
        out += block(1, struct.pack("<HHI", link, 0, 65535) + o)
    for p in packets:
        data = p["data"]
        if p.get("spb"):
            out += block(3, struct.pack("<I", len(data)) + data)
        else:
            t = p["t"]
            out += block(6, struct.pack("<IIIII", p.get("iface", 0), t >> 32, t & 0xFFFFFFFF, len(data), len(data)) + data)
    with open(name, "wb") as f:
        f.write(out)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    os.chdir(here)
    cases = []

    # Raw IP: truncation and malformed forms.
    o_ts = bytes([1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2])
    fr = ip4(tcp(opts=o_ts, payload=4))
    fr2 = ip4(tcp(opts=bytes([2, 4, 5, 0xB4, 0, 0, 0, 0]), payload=4))
    md5 = bytes([19, 18]) + bytes(range(1, 17)) + bytes([1, 1])
    fr3 = ip4(tcp(opts=md5, payload=10))
    frag = bytes([6, 0, 0, 0, 0, 0, 0, 1])
    fr6 = ip6(tcp(flags=0x18, seq=5, ack=6, payload=8), nh=44, ext=frag)
    dstopt = bytes([0, 0, 0, 0, 0, 0, 0, 0])
    hbh = bytes([6, 0, 0, 0, 0, 0, 0, 0])
    fr11 = ip4(tcp(), ihl=6, opts=b"\1\1\1\1")
    frames = [
        dict(data=fr, cap=46),
        dict(data=fr, cap=42),
        dict(data=fr, cap=30),
        dict(data=fr, cap=23),
        dict(data=fr2, cap=45),
        dict(data=fr3, cap=len(fr3) - 5),
        dict(data=ip6(tcp(flags=2, seq=3), plen=60)),
        dict(data=ip6(tcp(flags=2, seq=3), plen=0)),
        dict(data=fr6, cap=48),
        dict(data=ip4(tcp(), tot=10)),
        dict(data=ip4(tcp(), tot=30)),
        dict(data=ip6(tcp(), nh=60, ext=dstopt + hbh)),
        dict(data=ip6(tcp(), nh=60, ext=bytes([6, 0, 0, 0, 0, 0, 0, 0]), plen=0)),
        dict(data=fr11, cap=22),
        dict(data=fr6),
        dict(data=ip6(tcp(sport=7, dport=7, flags=0x11, payload=3), src=C6, nh=60, ext=bytes([44, 0, 0, 0, 0, 0, 0, 0]) + bytes([6, 0, 0, 0, 0, 0, 0, 9]))),
        dict(data=ip6(tcp(flags=0x02, seq=9), nh=0, ext=bytes([60, 0, 1, 4, 0, 0, 0, 0]) + bytes([6, 0, 0, 0, 0, 0, 0, 0]))),
        dict(data=ip4(tcp(opts=bytes([30, 12, 0x10, 0x01]) + b"\0" * 8, flags=0x02))),
        dict(data=ip4(tcp(opts=bytes([30, 24, 0x10, 0x01]) + bytes(range(20)), flags=0x10))),
        dict(data=ip4(tcp(opts=bytes([30, 8, 0x30, 0x07, 10, 0, 0, 1]), flags=0x10))),
        dict(data=ip4(tcp(opts=bytes([30, 5, 0x40, 3, 4, 1, 1, 1]), flags=0x10))),
        dict(data=ip4(tcp(opts=bytes([30, 12, 0x60, 0]) + bytes(range(8)), flags=0x10))),
        dict(data=ip4(tcp(opts=bytes([30, 3, 0x90]) + bytes([1]), flags=0x10))),
        dict(data=ip4(tcp(opts=bytes([34, 5, 1, 2, 3, 0]), flags=0x02))),
        dict(data=ip4(tcp(opts=bytes([20, 4, 0xAB, 7, 6, 6, 0, 0, 0, 9]), flags=0x10))),
        dict(data=ip4(tcp(opts=bytes([29, 3, 1, 0]), flags=0x10))),
        dict(data=ip4(tcp(opts=bytes([5, 10, 0, 0, 0, 1, 0, 0, 0, 2]), flags=0x10, seq=1, ack=1))),
        dict(data=ip4(tcp(flags=0x10, payload=2, doff=4))),
    ]
    pcap("raw-edge.pcap", frames, link=101)
    cases.append(("raw-edge.pcap", "-n -S -tt"))
    cases.append(("raw-edge.pcap", "-n"))

    # Big-endian nanosecond pcap over Ethernet with VLAN tags; link type 228.
    fr = [
        dict(data=eth(ip4(tcp(flags=0x02, seq=10)), vlans=(5,)), sec=1700000000, frac=999999999),
        dict(data=eth(ip4(tcp(sport=80, dport=1000, flags=0x12, seq=99, ack=11), src=B4, dst=A4), vlans=(5, 6)), sec=1700000001, frac=5),
        dict(data=eth(ip6(tcp(flags=0x10, seq=11, ack=100), src=C6), et=0x86DD), sec=1700000000, frac=1),
    ]
    pcap("be-nano-vlan.pcap", fr, link=1, nano=True, big=True)
    for a in ("-n", "-n --nano", "-n -ttt --nano", "-n -ttttt", "-n -tttt"):
        cases.append(("be-nano-vlan.pcap", a))
    pcap("raw4.pcap", [dict(data=ip4(tcp(flags=0x02, seq=1)))], link=228)
    cases.append(("raw4.pcap", "-n"))
    pcap("sll2.pcap", [dict(data=sll2(ip6(tcp(flags=0x02, seq=1)), et=0x86DD)), dict(data=sll2(ip4(tcp(flags=0x12, seq=1, ack=2))))], link=276)
    cases.append(("sll2.pcap", "-n"))
    pcap("sll-micro-odd.pcap", [
        dict(data=sll(ip4(tcp(flags=0x02, seq=1))), sec=10, frac=1000000),
        dict(data=sll(ip4(tcp(flags=0x02, seq=1))), sec=10, frac=999999),
        dict(data=sll(ip4(tcp(flags=0x02, seq=1))), sec=0x80000001, frac=0),
    ], link=113)
    for a in ("-n", "-n -tt --nano", "-n -ttt", "-n -ttttt"):
        cases.append(("sll-micro-odd.pcap", a))

    # pcapng: interfaces with different resolutions and an offset; an SPB.
    pk = [
        dict(iface=0, t=1_700_000_000_123_456_789, data=eth(ip4(tcp(flags=0x02, seq=1)))),
        dict(iface=1, t=(1_700_000_000 << 20) | (1 << 19), data=eth(ip4(tcp(flags=0x02, seq=2)))),
        dict(iface=2, t=1_700_000_000_123, data=eth(ip4(tcp(flags=0x02, seq=3)))),
        dict(iface=3, t=42_000_001, data=eth(ip4(tcp(flags=0x02, seq=4)))),
        dict(spb=True, data=eth(ip4(tcp(flags=0x02, seq=5)))),
    ]
    pcapng("ifaces.pcapng", 1, [(9, None), (0x80 | 20, None), (3, None), (None, 1_600_000_000)], pk)
    for a in ("-n", "-n --nano", "-n -tt"):
        cases.append(("ifaces.pcapng", a))

    # IPv6 routing headers: types 0, 2, 4 (segment routing) and an unknown
    # one, odd lengths, reserved bits, cuts inside the header and after it,
    # and one between a hop-by-hop and a fragment header.
    def a6(s):
        return ipaddress.IPv6Address(s).packed

    def rh(nh, typ, segleft, body, hlen=None):
        b = struct.pack(">BBBB", nh, 0, typ, segleft) + body
        b += b"\0" * (-len(b) % 8)
        if hlen is None:
            hlen = len(b) // 8 - 1
        return b[:1] + bytes([hlen]) + b[2:]

    syn = tcp(flags=0x02, seq=1)
    t0 = rh(6, 0, 1, b"\0\0\0\0" + a6("2001:db8::5") + a6("2001:db8::6"))
    srh = rh(6, 4, 2, struct.pack(">BBH", 2, 0x80, 0xBEEF) + a6("2001:db8::a") + a6("2001:db8::b") + a6("2001:db8::c"))
    rt_frames = [
        dict(data=ip6(syn, nh=43, ext=t0)),
        dict(data=ip6(syn, nh=43, ext=rh(6, 0, 0, b"\0\0\1\2" + a6("::1")))),
        dict(data=ip6(tcp(sport=80, dport=1000, flags=0x12, seq=7, ack=2), nh=43, ext=rh(6, 2, 1, b"\0\0\0\0" + a6("2001:db8::7")))),
        dict(data=ip6(syn, nh=43, ext=srh)),
        dict(data=ip6(syn, nh=43, ext=rh(6, 4, 0, struct.pack(">BBH", 9, 0, 1) + a6("2001:db8::a") + a6("2001:db8::b")))),
        dict(data=ip6(syn, nh=43, ext=rh(6, 3, 1, b"\0" * 12))),
        dict(data=ip6(syn, nh=43, ext=rh(6, 0, 1, b"\0\0\0\0" + a6("2001:db8::5"), hlen=1))),
        dict(data=ip6(syn, nh=43, ext=rh(6, 4, 1, struct.pack(">BBH", 0, 1, 2) + a6("2001:db8::5"), hlen=1))),
        dict(data=ip6(syn, nh=43, ext=srh), cap=40 + 8 + 20),
        dict(data=ip6(syn, nh=43, ext=srh), cap=40 + 6),
        dict(data=ip6(syn, nh=43, ext=srh), cap=40 + 8 + 16 * 3 + 4),
        dict(data=ip6(tcp(dport=9999, flags=0x18, seq=1, ack=1, payload=5), nh=0, ext=bytes([43, 0, 1, 4, 0, 0, 0, 0]) + rh(44, 0, 0, b"\0\0\0\0" + a6("::1")) + bytes([6, 0, 0, 0, 0, 0, 0, 1]))),
        dict(data=ip6(syn, nh=43, ext=rh(60, 2, 1, b"\0\0\0\0" + a6("2001:db8::7")) + bytes([6, 0, 1, 4, 0, 0, 0, 0]))),
    ]
    # Longer chains: five and six headers (a routing header fifth), two
    # routing headers, a 16-byte hop-by-hop header before a fragment header.
    def d(nh, words=0):
        return bytes([nh, words, 1, 4 + 8 * words]) + b"\0" * (4 + 8 * words)

    t2 = rh(6, 2, 1, b"\0\0\0\0" + a6("2001:db8::7"))
    rt_frames += [
        dict(data=ip6(syn, nh=60, ext=d(60) + d(60) + d(60) + d(60) + d(6))),
        dict(data=ip6(syn, nh=60, ext=d(60) + d(60) + d(60) + d(43) + rh(60, 2, 1, b"\0\0\0\0" + a6("2001:db8::8")) + d(6))),
        dict(data=ip6(syn, nh=43, ext=rh(43, 2, 1, b"\0\0\0\0" + a6("2001:db8::1:1")) + t2)),
        dict(data=ip6(tcp(dport=9999, flags=0x18, seq=1, ack=1, payload=5), nh=0, ext=d(44, 1) + bytes([6, 0, 0, 0, 0, 0, 0, 1]))),
    ]
    # Options and fragment headers cut by the capture.
    rt_frames += [
        dict(data=ip6(syn, nh=60, ext=d(6, 1)), cap=40 + 10),
        dict(data=ip6(syn, nh=0, ext=d(6, 1)), cap=40 + 10),
        dict(data=ip6(syn, nh=44, ext=bytes([6, 0, 0, 0, 0, 0, 0, 1])), cap=40 + 6),
        dict(data=ip6(syn, nh=60, ext=d(6, 1)), cap=40 + 16 + 2),
    ]
    pcap("ipv6-routing.pcap", rt_frames, link=101)
    cases.append(("ipv6-routing.pcap", "-n"))
    cases.append(("ipv6-routing.pcap", "-n -S -tt"))

    rows = []
    for cap, args in cases:
        tag = args.replace(" ", "").replace("--", "-").lstrip("-")
        out = f"{cap}.{tag}.out"
        res = subprocess.run(["tcpdump"] + args.split() + ["-r", cap], capture_output=True, env=dict(os.environ, TZ="UTC", LC_ALL="C"))
        with open(out, "wb") as f:
            f.write(res.stdout)
        rows.append(f"{cap}\t{args}\t{out}\n")
    with open("CASES.tsv", "w") as f:
        f.write("capture\ttcpdump_args\texpected_output\n")
        f.writelines(rows)


if __name__ == "__main__":
    main()
