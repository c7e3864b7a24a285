#!/usr/bin/env node
// Plays an HLS URL with hls.js in headless Chromium and prints one JSON result on stdout.
//
//   node play.mjs --url <master.m3u8> [--timeout-secs 60] [--max-bandwidth <bps>] [--rate 1]
//                 [--start-level <n>] [--chromium /usr/bin/chromium] [--cookie name=value]...
//
// The streamstack browser test harness (tests/src/browser.rs runs it; see tests/browser/README.md).
//
// Cross-origin: the harness page and hls.js are served from the playlist's own origin. A
// request pattern (CDP Fetch domain) limited to `<origin>/__streamstack_harness__/*` answers
// those two URLs from this process (hls.js from node_modules, never a CDN); every other
// request (playlists, segments) goes to the real server untouched. So the player is
// same-origin with the media and needs no CORS from the server (moto's S3 here, a CDN later).
//
// Cookies: each `--cookie name=value` is set for the playlist's origin (path `/`) before the
// page loads, as an app holding signed cookies (CloudFront-Policy, ...) would have them.
//
// Result (stdout, one line): ended, playedSeconds, duration, timedOut, fatalErrors, nonFatalErrors,
// levels (renditions of the master playlist), requested (fragment URLs per level),
// levelsRequested, switches (LEVEL_SWITCHED in order), bitrateSwitches, wallSeconds,
// responses ({url, status} of every response the page got but the harness's own, in order).
// Exit code 0 whenever a result is printed (a fatal error is a result); 2 on a harness failure
// (bad arguments, browser did not start), with the reason on stderr.

import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import puppeteer from 'puppeteer-core';

const HARNESS_PREFIX = '/__streamstack_harness__/';

function parseArgs(argv) {
  const opts = {
    url: null,
    timeoutSecs: 60,
    maxBandwidth: null,
    rate: 1,
    startLevel: null,
    chromium: process.env.CHROMIUM || '/usr/bin/chromium',
    cookies: [],
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) throw new Error(`${arg} needs a value`);
      return argv[++i];
    };
    const number = (v) => {
      const n = Number(v);
      if (!Number.isFinite(n)) throw new Error(`${arg}: not a number: ${v}`);
      return n;
    };
    switch (arg) {
      case '--url': opts.url = value(); break;
      case '--timeout-secs': opts.timeoutSecs = number(value()); break;
      case '--max-bandwidth': opts.maxBandwidth = number(value()); break;
      case '--rate': opts.rate = number(value()); break;
      case '--start-level': opts.startLevel = number(value()); break;
      case '--chromium': opts.chromium = value(); break;
      case '--cookie': {
        const pair = value();
        const eq = pair.indexOf('=');
        if (eq <= 0) throw new Error(`--cookie: want name=value, got ${pair}`);
        opts.cookies.push({ name: pair.slice(0, eq), value: pair.slice(eq + 1) });
        break;
      }
      default: throw new Error(`unknown argument ${arg}`);
    }
  }
  if (!opts.url) throw new Error('--url is required');
  if (opts.maxBandwidth !== null && opts.maxBandwidth <= 0) throw new Error('--max-bandwidth must be > 0');
  if (opts.rate <= 0) throw new Error('--rate must be > 0');
  return opts;
}

// Runs in the page: plays `url` with hls.js, resolves with the result when the video ends, on
// the first fatal error, or after `timeoutMs`.
function playInPage({ url, timeoutMs, rate, hlsConfig }) {
  return new Promise((resolve) => {
    const started = performance.now();
    const video = document.getElementById('video');
    const result = {
      ended: false,
      timedOut: false,
      playedSeconds: 0,
      duration: null,
      fatalErrors: [],
      nonFatalErrors: 0,
      nonFatalDetails: [],
      levels: [],
      requested: {},
      levelsRequested: [],
      switches: [],
      bitrateSwitches: 0,
    };
    if (!window.Hls || !window.Hls.isSupported()) {
      result.fatalErrors.push({ type: 'harness', details: 'hls.js not supported (no MediaSource?)' });
      resolve(result);
      return;
    }
    const hls = new window.Hls(hlsConfig);
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      let played = 0;
      for (let i = 0; i < video.played.length; i++) played += video.played.end(i) - video.played.start(i);
      result.playedSeconds = Math.round(played * 1000) / 1000;
      result.duration = Number.isFinite(video.duration) ? video.duration : null;
      result.levelsRequested = Object.keys(result.requested).map(Number).sort((a, b) => a - b);
      result.bitrateSwitches = Math.max(0, result.switches.length - 1);
      result.wallSeconds = Math.round(performance.now() - started) / 1000;
      hls.destroy();
      resolve(result);
    };
    setTimeout(() => { result.timedOut = true; finish(); }, timeoutMs);
    hls.on(window.Hls.Events.MANIFEST_PARSED, (_e, data) => {
      result.levels = data.levels.map((l, index) => ({
        index,
        bitrate: l.bitrate,
        width: l.width || null,
        height: l.height || null,
        codecs: [l.videoCodec, l.audioCodec].filter(Boolean).join(','),
        url: Array.isArray(l.url) ? l.url[0] : l.url,
      }));
      video.play().catch((err) => {
        if (done) return; // hls.destroy() after a fatal error interrupts play(): not a second error
        result.fatalErrors.push({ type: 'play', details: String(err) });
        finish();
      });
    });
    hls.on(window.Hls.Events.FRAG_LOADING, (_e, data) => {
      const frag = data.frag;
      if (frag.type !== 'main' || frag.sn === 'initSegment') return;
      (result.requested[frag.level] ||= []).push(frag.url);
    });
    hls.on(window.Hls.Events.LEVEL_SWITCHED, (_e, data) => {
      result.switches.push({ level: data.level, atSeconds: Math.round(video.currentTime * 1000) / 1000 });
    });
    hls.on(window.Hls.Events.ERROR, (_e, data) => {
      if (data.fatal) {
        result.fatalErrors.push({
          type: data.type,
          details: data.details,
          url: (data.frag && data.frag.url) || (data.context && data.context.url) || data.url || null,
          status: (data.response && data.response.code) || null,
          reason: data.reason || (data.error && String(data.error)) || null,
        });
        finish();
      } else {
        result.nonFatalErrors += 1;
        if (result.nonFatalDetails.length < 20) result.nonFatalDetails.push(data.details);
      }
    });
    video.addEventListener('playing', () => { video.playbackRate = rate; });
    video.addEventListener('ended', () => { result.ended = true; finish(); });
    video.addEventListener('error', () => {
      const e = video.error;
      result.fatalErrors.push({ type: 'media', details: e ? `${e.code}: ${e.message}` : 'video error' });
      finish();
    });
    hls.loadSource(url);
    hls.attachMedia(video);
  });
}

async function main() {
  let opts;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`play.mjs: ${err.message}\n`);
    process.exit(2);
  }
  const require = createRequire(import.meta.url);
  const hlsSource = readFileSync(require.resolve('hls.js/dist/hls.min.js'));
  const target = new URL(opts.url);
  const origin = target.origin;
  const pageUrl = `${origin}${HARNESS_PREFIX}index.html`;
  const pageHtml = `<!doctype html><html><head><meta charset="utf-8"><title>streamstack harness</title>
<script src="${HARNESS_PREFIX}hls.min.js"></script></head>
<body><video id="video" muted autoplay playsinline></video></body></html>`;
  const harnessFiles = {
    [`${HARNESS_PREFIX}index.html`]: { type: 'text/html; charset=utf-8', body: Buffer.from(pageHtml) },
    [`${HARNESS_PREFIX}hls.min.js`]: { type: 'text/javascript', body: hlsSource },
  };

  const userDataDir = mkdtempSync(join(tmpdir(), 'streamstack-chromium-'));
  let browser;
  const cleanup = async () => {
    if (browser) await browser.close().catch(() => {});
    rmSync(userDataDir, { recursive: true, force: true });
  };
  // The harness's own bound: the caller also kills the process after its own timeout.
  const hardLimit = setTimeout(async () => {
    process.stderr.write(`play.mjs: no result within ${opts.timeoutSecs + 30} s\n`);
    await cleanup();
    process.exit(3);
  }, (opts.timeoutSecs + 30) * 1000);
  try {
    browser = await puppeteer.launch({
      executablePath: opts.chromium,
      headless: true,
      userDataDir,
      args: [
        '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync',
        '--autoplay-policy=no-user-gesture-required', '--mute-audio',
      ],
      protocolTimeout: (opts.timeoutSecs + 20) * 1000,
    });
    const page = await browser.newPage();
    // Every response the page gets (playlists, segments, errors), the harness's own excepted.
    const responses = [];
    page.on('response', (response) => {
      const url = response.url();
      if (new URL(url).pathname.startsWith(HARNESS_PREFIX) || responses.length >= 5000) return;
      responses.push({ url, status: response.status() });
    });
    if (opts.cookies.length > 0) {
      await page.setCookie(...opts.cookies.map((c) => ({ ...c, url: origin, path: '/' })));
    }
    const consoleLines = [];
    page.on('console', (msg) => { if (consoleLines.length < 50) consoleLines.push(`${msg.type()}: ${msg.text()}`); });
    page.on('pageerror', (err) => { consoleLines.push(`pageerror: ${err.message}`); });
    const cdp = await page.createCDPSession();
    cdp.on('Fetch.requestPaused', async (event) => {
      const path = new URL(event.request.url).pathname;
      const file = harnessFiles[path];
      try {
        if (file) {
          await cdp.send('Fetch.fulfillRequest', {
            requestId: event.requestId,
            responseCode: 200,
            responseHeaders: [{ name: 'Content-Type', value: file.type }, { name: 'Cache-Control', value: 'no-store' }],
            body: file.body.toString('base64'),
          });
        } else {
          await cdp.send('Fetch.fulfillRequest', { requestId: event.requestId, responseCode: 404, body: '' });
        }
      } catch (err) {
        consoleLines.push(`harness fetch: ${err.message}`);
      }
    });
    await cdp.send('Fetch.enable', { patterns: [{ urlPattern: `${origin}${HARNESS_PREFIX}*`, requestStage: 'Request' }] });
    await cdp.send('Network.enable');
    await cdp.send('Network.setCacheDisabled', { cacheDisabled: true });

    const hlsConfig = {
      capLevelToPlayerSize: false,
      // Bounded retries so a broken stream turns into a fatal error in seconds, not the
      // default ~30 s of backoff.
      manifestLoadPolicy: { default: { maxTimeToFirstByteMs: 10000, maxLoadTimeMs: 20000,
        timeoutRetry: { maxNumRetry: 1, retryDelayMs: 0, maxRetryDelayMs: 0 },
        errorRetry: { maxNumRetry: 1, retryDelayMs: 250, maxRetryDelayMs: 500 } } },
      playlistLoadPolicy: { default: { maxTimeToFirstByteMs: 10000, maxLoadTimeMs: 20000,
        timeoutRetry: { maxNumRetry: 1, retryDelayMs: 0, maxRetryDelayMs: 0 },
        errorRetry: { maxNumRetry: 1, retryDelayMs: 250, maxRetryDelayMs: 500 } } },
      fragLoadPolicy: { default: { maxTimeToFirstByteMs: 10000, maxLoadTimeMs: 60000,
        timeoutRetry: { maxNumRetry: 2, retryDelayMs: 0, maxRetryDelayMs: 0 },
        errorRetry: { maxNumRetry: 2, retryDelayMs: 250, maxRetryDelayMs: 500 } } },
    };
    if (opts.maxBandwidth !== null) {
      // The cap is the network's (CDP throttling of the whole page); the player starts from an
      // optimistic estimate (4x the cap) on its top rendition and has to find the cap itself.
      await cdp.send('Network.emulateNetworkConditions', {
        offline: false,
        latency: 0,
        downloadThroughput: opts.maxBandwidth / 8,
        uploadThroughput: -1,
      });
      hlsConfig.abrEwmaDefaultEstimate = opts.maxBandwidth * 4;
      hlsConfig.testBandwidth = false;
    }
    if (opts.startLevel !== null) hlsConfig.startLevel = opts.startLevel;

    await page.goto(pageUrl, { waitUntil: 'load', timeout: 20000 });
    const result = await page.evaluate(playInPage, {
      url: opts.url,
      timeoutMs: opts.timeoutSecs * 1000,
      rate: opts.rate,
      hlsConfig,
    });
    result.url = opts.url;
    result.maxBandwidth = opts.maxBandwidth;
    result.rate = opts.rate;
    result.browser = await browser.version();
    result.console = consoleLines;
    result.responses = responses;
    process.stdout.write(`${JSON.stringify(result)}\n`);
    clearTimeout(hardLimit);
    await cleanup();
  } catch (err) {
    process.stderr.write(`play.mjs: ${err.stack || err}\n`);
    clearTimeout(hardLimit);
    await cleanup();
    process.exit(2);
  }
}

main();
