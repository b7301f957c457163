// Starts a real Unleash server for the test suite (copied next to node_modules by tests/support/unleash.py).
// Settings come from the environment: UNLEASH_PORT, UNLEASH_DATABASE_URL, INIT_ADMIN_API_TOKENS,
// INIT_BACKEND_API_TOKENS (read by Unleash itself).
import { start } from 'unleash-server';

const url = new URL(process.env.UNLEASH_DATABASE_URL);
const unleash = await start({
  db: {
    host: url.hostname,
    port: Number(url.port || 5432),
    user: decodeURIComponent(url.username),
    password: decodeURIComponent(url.password),
    database: url.pathname.slice(1),
    ssl: false,
  },
  server: { port: Number(process.env.UNLEASH_PORT), host: '127.0.0.1' },
  authentication: { type: 'open-source', enableApiToken: true },
  logLevel: 'warn',
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, async () => {
    await unleash.stop();
    process.exit(0);
  });
}
