#!/usr/bin/env python3
"""Holds N streaming completions open through macrohardd at once and reports what they cost the
daemon: its thread count (sampled from /proc every 50 ms, before and while they are open), its
resident memory per open stream, and how many streams ended without their [DONE] (dropped).
  bench/serving/hold_streams.py HOST:PORT KEY MODEL DAEMON_PID [STREAMS, 2000] [TOKENS, 16]
bench/serving/run.sh runs it last."""
import asyncio
import json
import sys
import time

HOST, PORT = sys.argv[1].rsplit(":", 1)
KEY, MODEL, PID = sys.argv[2], sys.argv[3], int(sys.argv[4])
STREAMS = int(sys.argv[5]) if len(sys.argv) > 5 else 2000
TOKENS = int(sys.argv[6]) if len(sys.argv) > 6 else 16


def status():
    fields = {}
    with open(f"/proc/{PID}/status") as f:
        for line in f:
            name, _, value = line.partition(":")
            fields[name] = value.split()
    return int(fields["Threads"][0]), int(fields["VmRSS"][0])  # VmRSS in KiB


async def one(opened, done):
    body = json.dumps({"model": MODEL, "prompt": "Hi", "max_tokens": TOKENS,
                       "stream": True, "temperature": 0}).encode()
    head = (f"POST /v1/completions HTTP/1.1\r\nHost: {HOST}\r\n"
            f"Authorization: Bearer {KEY}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    try:
        reader, writer = await asyncio.open_connection(HOST, int(PORT))
    except OSError:
        return False
    writer.write(head + body)
    await writer.drain()
    opened.append(1)
    await done.wait()  # every stream is open before any is read
    data = await reader.read()
    writer.close()
    return b"data: [DONE]" in data and data.startswith(b"HTTP/1.1 200")


async def main():
    threads0, rss0 = status()
    opened, done = [], asyncio.Event()
    tasks = [asyncio.create_task(one(opened, done)) for _ in range(STREAMS)]
    peak_threads, peak_rss = threads0, rss0
    began = time.time()
    while len(opened) < STREAMS and time.time() - began < 60:
        await asyncio.sleep(0.05)
        t, r = status()
        peak_threads, peak_rss = max(peak_threads, t), max(peak_rss, r)
    await asyncio.sleep(1)  # the requests read, queued or decoding
    t, r = status()
    peak_threads, peak_rss = max(peak_threads, t), max(peak_rss, r)
    held_rss = r
    done.set()
    waiting = asyncio.gather(*tasks)
    while not waiting.done():
        await asyncio.sleep(0.05)
        t, r = status()
        peak_threads = max(peak_threads, t)
    ok = sum(1 for x in waiting.result() if x)
    seconds = time.time() - began
    print(f"{STREAMS} streams held open at once ({len(opened)} opened), {TOKENS} tokens each")
    print(f"daemon threads: {threads0} before, at most {peak_threads} while open")
    print(f"daemon RSS: {rss0 / 1024:.1f} MiB before, {held_rss / 1024:.1f} MiB with all open "
          f"({(held_rss - rss0) / max(1, STREAMS):.1f} KiB a stream)")
    print(f"completed with [DONE]: {ok}; dropped: {STREAMS - ok}; {seconds:.1f} s in all")


asyncio.run(main())
