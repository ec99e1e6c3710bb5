"""A second ZooKeeper client for the discovery tests: kazoo (PyPI), an implementation nobody
here wrote. One command per run, the answer as one JSON line on stdout.

  kazoo_tool.py HOSTS children PATH        -> [{"name", "data", "keys", "ephemeralOwner", "czxid"}]
  kazoo_tool.py HOSTS create PATH DATA     -> persistent node (parents made), "ok"
  kazoo_tool.py HOSTS set PATH DATA        -> "ok"
  kazoo_tool.py HOSTS mkdir PATH           -> "ok"
"""
import json
import sys

from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError


def keys_in_order(text):
    """The top-level keys of a JSON object in the order they are written (None if not JSON)."""
    try:
        pairs = json.loads(text, object_pairs_hook=lambda p: p)
    except ValueError:
        return None
    return [k for k, _ in pairs] if isinstance(pairs, list) else None


def main():
    hosts, cmd, path = sys.argv[1], sys.argv[2], sys.argv[3]
    zk = KazooClient(hosts=hosts, timeout=5.0)
    zk.start(timeout=10)
    try:
        if cmd == "children":
            out = []
            try:
                names = sorted(zk.get_children(path))
            except NoNodeError:
                names = None
            for name in names or []:
                try:
                    data, stat = zk.get(path + "/" + name)
                except NoNodeError:
                    continue
                text = data.decode("utf-8", "replace")
                out.append({
                    "name": name,
                    "data": text,
                    "keys": keys_in_order(text),
                    "ephemeralOwner": stat.ephemeralOwner,
                    "czxid": stat.czxid,
                })
            print(json.dumps(out if names is not None else None))
        elif cmd == "create":
            zk.create(path, sys.argv[4].encode("utf-8"), makepath=True)
            print(json.dumps("ok"))
        elif cmd == "set":
            zk.set(path, sys.argv[4].encode("utf-8"))
            print(json.dumps("ok"))
        elif cmd == "mkdir":
            zk.ensure_path(path)
            print(json.dumps("ok"))
        else:
            raise SystemExit("unknown command " + cmd)
    finally:
        zk.stop()
        zk.close()


main()
