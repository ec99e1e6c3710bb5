// Sends pushes with @parse/node-apn, as a sender's own code would, and prints one JSON line per
// push: {"id", "device", "status", "reason", "error"} (status 200 when node-apn reports it
// sent). Driven by apns-relay/tests/stock_clients.rs; the one argument is a JSON object:
//   address, port       where node-apn connects (its `address`/`port` options)
//   ca                  PEM file node-apn trusts (its `ca`), or null
//   token               { key: p8 path, keyId, teamId } for token auth, or null
//   cert, key           PEM files for certificate auth (ignored by node-apn with a token)
//   proxy               { host, port } for a CONNECT proxy, or null (node-apn sends no
//                       credentials and does not pass `ca` through it: NODE_EXTRA_CA_CERTS)
//   topic, count, concurrency, first (index of the first device token)
'use strict';
const apn = require('@parse/node-apn');
const crypto = require('crypto');

const cfg = JSON.parse(process.argv[2]);
const options = {
  address: cfg.address,
  port: cfg.port,
  production: false,
  connectionRetryLimit: 3,
  requestTimeout: 10000,
};
if (cfg.ca) options.ca = cfg.ca;
if (cfg.token) options.token = cfg.token;
if (cfg.cert) options.cert = cfg.cert;
if (cfg.key) options.key = cfg.key;
if (cfg.proxy) options.proxy = cfg.proxy;
const provider = new apn.Provider(options);

function device(i) {
  return i.toString(16).padStart(64, '0');
}

async function one(i) {
  const note = new apn.Notification();
  note.id = crypto.randomUUID();
  note.topic = cfg.topic;
  note.alert = { title: 'node-apn', body: `push ${i}` };
  note.payload = { n: i };
  const to = device(cfg.first + i);
  const line = { id: note.id, device: to, status: null, reason: null, error: null };
  try {
    const result = await provider.send(note, to);
    if (result.sent.length === 1) {
      line.status = 200;
    } else {
      const f = result.failed[0] || {};
      line.status = f.status ? Number(f.status) : null;
      line.reason = f.response && f.response.reason ? f.response.reason : null;
      line.error = f.error ? String(f.error.message || f.error) : null;
    }
  } catch (e) {
    line.error = String(e && e.message ? e.message : e);
  }
  process.stdout.write(JSON.stringify(line) + '\n');
}

async function main() {
  let next = 0;
  const worker = async () => {
    while (next < cfg.count) {
      await one(next++);
    }
  };
  await Promise.all(Array.from({ length: cfg.concurrency }, worker));
  await provider.shutdown();
}

main().catch((e) => {
  process.stderr.write(`node_apn_send: ${e && e.stack ? e.stack : e}\n`);
  process.exit(1);
});
