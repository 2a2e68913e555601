#!/usr/bin/env python3
"""Holds connections open against a server: N idle ones (connected, nothing sent) and M
slow-header clients that send one byte of a request header per second, never finishing it.
Prints how many of each it holds, every second, until killed.
  hold.py PORT IDLE SLOW"""
import socket
import sys
import time

port, idle_n, slow_n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
idle, slow = [], []


def connect():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setblocking(True)
    s.connect(("127.0.0.1", port))
    return s


for _ in range(idle_n):
    try:
        idle.append(connect())
    except OSError as e:
        print(f"idle connect failed after {len(idle)}: {e}", flush=True)
        break
header = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100000
for _ in range(slow_n):
    try:
        slow.append([connect(), 0])
    except OSError as e:
        print(f"slow connect failed after {len(slow)}: {e}", flush=True)
        break
while True:
    alive = 0
    for entry in slow:
        s, at = entry
        if s is None:
            continue
        try:
            s.send(header[at:at + 1])
            entry[1] = at + 1
            alive += 1
        except OSError:
            entry[0] = None
    closed = 0
    for s in idle:
        try:
            s.setblocking(False)
            if s.recv(1, socket.MSG_PEEK) == b"":
                closed += 1
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
    print(f"holding idle={len(idle) - closed} slow={alive}", flush=True)
    time.sleep(1)
