/**
 * The framework floor of the cache-hit benchmark: the baseline's work (read the body, parse the
 * AdmissionReview, answer a constant "allowed" with the uid echoed) done through Koa and @koa/router,
 * as scangate's HTTP surface is, with Koa's own response handling. No decision, logging or metrics:
 * the difference to baseline/server.mjs is what the framework costs, the difference to scangate is
 * what scangate's own work costs.
 *
 * usage: node baseline/koa-floor.mjs PORT CERT_FILE KEY_FILE   (koa from the project's node_modules)
 */
import { readFileSync } from 'node:fs';
import https from 'node:https';
import Router from '@koa/router';
import Koa from 'koa';

const [port, certFile, keyFile] = process.argv.slice(2);
const app = new Koa();
const router = new Router();
router.post('/validate', async (ctx) => {
  const chunks = [];
  await new Promise((resolve, reject) => {
    ctx.req.on('data', (c) => chunks.push(c));
    ctx.req.once('end', resolve);
    ctx.req.once('error', reject);
  });
  const review = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  ctx.body = { apiVersion: review.apiVersion, kind: 'AdmissionReview', response: { uid: review.request?.uid, allowed: true } };
});
router.get('/healthz', (ctx) => {
  ctx.body = { status: 'ok' };
});
app.use(router.routes());
const callback = app.callback();
const server = https.createServer({ cert: readFileSync(certFile), key: readFileSync(keyFile), minVersion: 'TLSv1.2' }, (req, res) => {
  void callback(req, res);
});
server.keepAliveTimeout = 65_000;
server.headersTimeout = 66_000;
server.listen(Number(port), '127.0.0.1');
process.once('SIGTERM', () => {
  server.close(() => process.exit(0));
  server.closeAllConnections();
});
