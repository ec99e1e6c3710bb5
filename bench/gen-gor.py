#!/usr/bin/env python3
"""Writes a synthetic GoReplay recording: Poisson arrivals at RATE req/s for SECONDS.

Usage: gen-gor.py RATE SECONDS OUT.gor [mix|healthz]
  mix:     60% GET /healthz, 30% POST /broadcast (JSON body), 10% GET /stats
  healthz: GET /healthz only (for the throughput comparison with wrk)
Seeded, so every sitting replays the same file.
"""
import random
import sys

SEP = "\n🐵🙈🙉\n".encode()


def main():
    rate, seconds, out = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
    mix = sys.argv[4] if len(sys.argv) > 4 else "mix"
    rng = random.Random(42)
    t0 = 1_795_600_000_000_000_000
    t = 0.0
    n = 0
    with open(out, "wb") as f:
        while True:
            t += rng.expovariate(rate)
            if t >= seconds:
                break
            n += 1
            r = rng.random() if mix == "mix" else 0.0
            if r < 0.6:
                msg = b"GET /healthz HTTP/1.1\r\nHost: prod.example\r\nUser-Agent: app/1.0\r\n\r\n"
            elif r < 0.9:
                body = ('{"topic":"news","id":"m%d","body":"%s"}' % (n, "x" * rng.randint(16, 512))).encode()
                msg = (b"POST /broadcast HTTP/1.1\r\nHost: prod.example\r\nContent-Type: application/json\r\n"
                       b"Content-Length: %d\r\n\r\n" % len(body)) + body
            else:
                msg = b"GET /stats HTTP/1.1\r\nHost: prod.example\r\n\r\n"
            f.write(b"1 %024x %d -1\n" % (n, t0 + int(t * 1e9)))
            f.write(msg)
            f.write(SEP)
    print(f"{out}: {n} requests over {seconds:g}s ({n / seconds:.1f}/s)")


main()
