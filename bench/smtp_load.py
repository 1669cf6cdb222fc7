#!/usr/bin/env python3
"""SMTP delivery throughput: C concurrent clients, each on one connection, send M messages of S
bytes to one local user over plain SMTP; every message counts only once its 250 arrived (so only
once it is durable). Prints messages per second and latency percentiles.

    bench/smtp_load.py HOST PORT RCPT [--clients 10] [--messages 200] [--size 4096]
"""
import argparse
import smtplib
import statistics
import threading
import time


def client(host, port, rcpt, count, body, lat, errors):
    try:
        s = smtplib.SMTP(host, port, timeout=60)
        s.ehlo("bench.example")
        for _ in range(count):
            t0 = time.perf_counter()
            s.sendmail("bench@remote.example", [rcpt], body)
            lat.append(time.perf_counter() - t0)
        s.quit()
    except Exception as e:  # noqa: BLE001 - reported, counted
        errors.append(repr(e))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("rcpt")
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--messages", type=int, default=200)
    ap.add_argument("--size", type=int, default=4096)
    a = ap.parse_args()
    line = b"x" * 76 + b"\r\n"
    body = b"Subject: bench\r\n\r\n" + line * max(1, a.size // len(line))
    lat, errors, threads = [], [], []
    t0 = time.perf_counter()
    for _ in range(a.clients):
        t = threading.Thread(target=client, args=(a.host, a.port, a.rcpt, a.messages, body, lat, errors))
        t.start()
        threads.append(t)
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    lat.sort()
    pct = lambda p: lat[min(len(lat) - 1, int(len(lat) * p))] * 1000
    print(f"clients={a.clients} messages={len(lat)} size={len(body)} wall={wall:.2f}s "
          f"rate={len(lat) / wall:.0f}/s p50={pct(0.5):.2f}ms p99={pct(0.99):.2f}ms "
          f"mean={statistics.mean(lat) * 1000:.2f}ms errors={len(errors)}")
    if errors:
        print("first error:", errors[0])
        raise SystemExit(1)


if __name__ == "__main__":
    main()
