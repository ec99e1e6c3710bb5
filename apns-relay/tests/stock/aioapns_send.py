"""Sends pushes with aioapns, as a sender's own code would, and prints one JSON line per push:
{"id", "device", "status", "reason", "error"}. Driven by apns-relay/tests/stock_clients.rs; the
one argument is a JSON object:
  host, port     where aioapns connects: it hard-codes Apple's host and port 443, so this
                 script overrides its protocol class's APNS_SERVER / APNS_PORT
  ca             PEM file to trust
  key            p8 path, key_id, team_id: token auth; or client_cert (one PEM file holding
                 the certificate and its key): certificate auth
  topic, count, concurrency, first (index of the first device token)
"""
import asyncio
import json
import ssl
import sys
import uuid

from aioapns import APNs, NotificationRequest, PushType
from aioapns.connection import APNsProductionClientProtocol


def device(i: int) -> str:
    return format(i, "064x")


async def main(cfg: dict) -> None:
    APNsProductionClientProtocol.APNS_SERVER = cfg["host"]
    APNsProductionClientProtocol.APNS_PORT = cfg["port"]
    context = ssl.create_default_context(cafile=cfg["ca"])
    common = dict(topic=cfg["topic"], use_sandbox=False, ssl_context=context)
    if cfg.get("client_cert"):
        client = APNs(client_cert=cfg["client_cert"], **common)
    else:
        with open(cfg["key"]) as f:
            key = f.read()
        client = APNs(key=key, key_id=cfg["key_id"], team_id=cfg["team_id"], **common)
    queue = list(range(cfg["count"]))
    out = sys.stdout

    async def one(i: int) -> None:
        request = NotificationRequest(
            device_token=device(cfg["first"] + i),
            message={"aps": {"alert": {"title": "aioapns", "body": f"push {i}"}}, "n": i},
            notification_id=str(uuid.uuid4()),
            push_type=PushType.ALERT,
        )
        line = {"id": request.notification_id, "device": request.device_token,
                "status": None, "reason": None, "error": None}
        try:
            result = await asyncio.wait_for(client.send_notification(request), 30)
            line["status"] = int(result.status)
            line["reason"] = result.description
        except Exception as e:  # the test counts these: every push needs an outcome
            line["error"] = f"{type(e).__name__}: {e}"
        out.write(json.dumps(line) + "\n")

    async def worker() -> None:
        while queue:
            await one(queue.pop(0))

    await asyncio.gather(*(worker() for _ in range(cfg["concurrency"])))
    client.pool.close()


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
