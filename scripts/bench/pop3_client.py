#!/usr/bin/env python3
"""POP3S download client for scripts/bench/pop3: logs in, LIST, then RETR of
every message one after the other (as a mail client does), QUIT. Prints one
line of JSON: bytes received, seconds from the first RETR to the last byte,
time to first byte of each RETR (median, p95), login-to-first-byte, and
whether the sizes matched LIST after un-stuffing (first pass only checks a
sample, to keep the client out of the measurement).

usage: pop3_client.py PORT USER PASSWORD CAFILE"""
import json
import socket
import ssl
import statistics
import sys
import time


def main():
    port, user, password, cafile = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile)
    ctx.check_hostname = True
    t_connect = time.monotonic()
    sock = ctx.wrap_socket(socket.create_connection(('127.0.0.1', port)),
                           server_hostname='localhost')
    buf = bytearray()

    def line():
        nonlocal buf
        while True:
            i = buf.find(b'\r\n')
            if i >= 0:
                l = bytes(buf[:i])
                del buf[:i + 2]
                return l
            chunk = sock.recv(262144)
            if not chunk:
                raise EOFError('closed')
            buf += chunk

    def cmd(text):
        sock.sendall(text.encode() + b'\r\n')
        r = line()
        if not r.startswith(b'+OK'):
            raise RuntimeError('%s -> %r' % (text.split()[0], r))
        return r

    line()   # greeting
    cmd('USER ' + user)
    cmd('PASS ' + password)
    t_login = time.monotonic()
    cmd('LIST')
    sizes = []
    while True:
        l = line()
        if l == b'.':
            break
        sizes.append(int(l.split()[1]))

    ttfb = []
    total = 0
    mismatches = 0
    first_byte_after_login = None
    t0 = time.monotonic()
    for n in range(1, len(sizes) + 1):
        ts = time.monotonic()
        sock.sendall(b'RETR %d\r\n' % n)
        # wait for the first byte of the answer
        if not buf:
            chunk = sock.recv(262144)
            if not chunk:
                raise EOFError('closed')
            buf += chunk
        tf = time.monotonic()
        ttfb.append(tf - ts)
        if first_byte_after_login is None:
            first_byte_after_login = tf - t_login
        r = line()
        if not r.startswith(b'+OK'):
            raise RuntimeError('RETR %d -> %r' % (n, r))
        # the body ends with CRLF.CRLF; search only the new bytes
        got = 0
        while True:
            i = buf.find(b'\r\n.\r\n', max(0, got - 4))
            if i >= 0 or buf.startswith(b'.\r\n'):
                end = 0 if buf.startswith(b'.\r\n') else i + 2
                body = bytes(buf[:end])
                del buf[:end + 3]
                break
            got = len(buf)
            chunk = sock.recv(262144)
            if not chunk:
                raise EOFError('closed inside RETR')
            buf += chunk
        total += len(body)
        if n % 50 == 1:
            # check the size after un-stuffing on a sample
            unstuffed = len(body) - body.count(b'\r\n..') - (1 if body.startswith(b'..') else 0)
            if unstuffed != sizes[n - 1]:
                mismatches += 1
    t1 = time.monotonic()
    cmd('QUIT')
    sock.close()
    ttfb.sort()
    print(json.dumps({
        'messages': len(sizes), 'bytes': total, 'seconds': t1 - t0,
        'mb_s': total / (t1 - t0) / 1e6,
        'ttfb_median_ms': statistics.median(ttfb) * 1000,
        'ttfb_p95_ms': ttfb[int(len(ttfb) * 0.95)] * 1000,
        'login_to_first_byte_ms': first_byte_after_login * 1000,
        'connect_to_first_byte_ms': (t_login - t_connect) * 1000 + first_byte_after_login * 1000,
        'size_mismatches': mismatches,
    }))


if __name__ == '__main__':
    main()
