// Helpers shared by the Node conformance scripts: the same "OK <step>" / "DONE" output
// protocol as the Python ones, and a quiet logger for eureka-js-client.
'use strict';

function ok(step, detail) {
  console.log(`OK ${step}${detail === undefined ? '' : ' ' + detail}`);
}

function check(condition, message) {
  if (!condition) throw new Error(message);
}

function env(name, fallback) {
  const value = process.env[name] ?? fallback;
  if (value === undefined) throw new Error(`missing environment variable ${name}`);
  return value;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function waitFor(what, predicate, timeoutMs = 10000, intervalMs = 100) {
  const deadline = Date.now() + timeoutMs;
  let lastError;
  while (Date.now() < deadline) {
    try {
      const value = await predicate();
      if (value) return value;
    } catch (e) {
      lastError = e;
    }
    await sleep(intervalMs);
  }
  throw new Error(`timed out waiting for ${what} (last error: ${lastError})`);
}

const quietLogger = {
  debug() {}, info() {}, warn() {},
  error(...args) { console.error('eureka-js-client error:', ...args); },
};

function main(fn) {
  fn().then(() => {
    console.log('DONE');
    process.exit(0);
  }, (e) => {
    console.error(e && e.stack ? e.stack : e);
    process.exit(1);
  });
}

module.exports = { ok, check, env, sleep, waitFor, quietLogger, main };
