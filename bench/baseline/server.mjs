/**
 * The baseline of the cache-hit benchmark: the least an admission webhook can do. A bare node:https
 * server (same TLS settings and keep-alive timeouts as scangate) that reads the body, parses the same
 * AdmissionReview JSON and answers a constant "allowed" AdmissionReview (the uid echoed, as the API
 * server requires). No routing framework, no logging, no metrics, no decision.
 *
 * usage: node baseline/server.mjs PORT CERT_FILE KEY_FILE
 */
import { readFileSync } from 'node:fs';
import https from 'node:https';

const [port, certFile, keyFile] = process.argv.slice(2);
const server = https.createServer({ cert: readFileSync(certFile), key: readFileSync(keyFile), minVersion: 'TLSv1.2' }, (req, res) => {
  if (req.method !== 'POST') {
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}');
    return;
  }
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    let review;
    try {
      review = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      res.writeHead(400).end();
      return;
    }
    const body = JSON.stringify({ apiVersion: review.apiVersion, kind: 'AdmissionReview', response: { uid: review.request?.uid, allowed: true } });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body);
  });
});
server.keepAliveTimeout = 65_000;
server.headersTimeout = 66_000;
server.listen(Number(port), '127.0.0.1');
process.once('SIGTERM', () => {
  server.close(() => process.exit(0));
  server.closeAllConnections();
});
