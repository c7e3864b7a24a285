// The signed/* viewer-response function (infra/functions/playback-cookies.js, runtime
// cloudfront-js-2.0), run in a plain V8 context with CloudFront Functions event objects:
// a signed URL's Policy, Signature and Key-Pair-Id come back as signed cookies for the
// request's directory; anything else passes unchanged.
//   cd infra && npm test
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import { test } from 'node:test';
import * as vm from 'node:vm';
import { PLAYBACK_COOKIES_JS } from '../lib/playback';

type Entry = { value: string; attributes?: string; multiValue?: Entry[] };
type Event = {
  version: string;
  context: Record<string, string>;
  viewer: { ip: string };
  request: { method: string; uri: string; querystring: Record<string, Entry>; headers: Record<string, Entry>;
    cookies: Record<string, Entry> };
  response: { statusCode: number; statusDescription: string; headers: Record<string, Entry>;
    cookies: Record<string, Entry> };
};

/** The function's `handler`, loaded as CloudFront loads it: a script with a top-level function. */
function loadHandler(): (event: Event) => Event['response'] {
  const context = vm.createContext({});
  vm.runInContext(fs.readFileSync(PLAYBACK_COOKIES_JS, 'utf8'), context, { filename: PLAYBACK_COOKIES_JS });
  assert.equal(typeof context.handler, 'function');
  return context.handler;
}

const runInContext = loadHandler();

/** The handler's result as plain objects of this realm (the vm context has its own Object). */
function handler(e: Event): Event['response'] {
  return JSON.parse(JSON.stringify(runInContext(e)));
}

const SIGNED = {
  Policy: { value: 'eyJTdGF0ZW1lbnQiOlt7IlJlc291cmNlIjoiaHR0cHM6Ly9kMTExMTExYWJjZGVmOC5jbG91ZGZyb250Lm5ldC9zaWduZWQvbGl2ZS9hYmMvKiJ9XX0_' },
  Signature: { value: 'Nql641NHEUkUaXQHZINK1FZ~SYeUSoBJMxjdgqrzIdzV2gyEXPDNv0pYdWJkflDKJ3xIu7lbwRpSkG98NBlgPi4ZJpRRnVX4kXAJK6tdNx6FucDB7OVqzcxkxHsGFd8VCG1BkC-Afh9~lOCMIYHIaiOB6~5jt9w2EOwi6sIIqrg_' },
  'Key-Pair-Id': { value: 'K2JCJMDEHXQW5F' },
};

function event(uri: string, querystring: Record<string, Entry>, statusCode = 200): Event {
  return {
    version: '1.0',
    context: { distributionDomainName: 'd111111abcdef8.cloudfront.net', distributionId: 'EDFDVBD6EXAMPLE',
      eventType: 'viewer-response', requestId: 'r-1' },
    viewer: { ip: '198.51.100.11' },
    request: { method: 'GET', uri, querystring, headers: { host: { value: 'd111111abcdef8.cloudfront.net' } }, cookies: {} },
    response: {
      statusCode,
      statusDescription: statusCode === 200 ? 'OK' : 'Forbidden',
      headers: { 'content-type': { value: 'application/vnd.apple.mpegurl' } },
      cookies: {},
    },
  };
}

function copyOf<T>(v: T): T {
  return JSON.parse(JSON.stringify(v));
}

test('a signed playlist URL: its three parameters as signed cookies for the playlist directory', () => {
  const response = handler(event('/signed/live/abc/index.m3u8', copyOf(SIGNED)));
  const attributes = 'Path=/signed/live/abc/; Secure; HttpOnly; SameSite=None; Partitioned';
  assert.deepEqual(response.cookies, {
    'CloudFront-Policy': { value: SIGNED.Policy.value, attributes },
    'CloudFront-Signature': { value: SIGNED.Signature.value, attributes },
    'CloudFront-Key-Pair-Id': { value: SIGNED['Key-Pair-Id'].value, attributes },
  });
  assert.equal(response.statusCode, 200);
  assert.deepEqual(response.headers, { 'content-type': { value: 'application/vnd.apple.mpegurl' } });
});

test('the path is the request directory at any depth, and other cookies stay', () => {
  const e = event('/signed/outputs/asset-1/hls/master.m3u8', copyOf(SIGNED));
  e.response.cookies = { other: { value: 'x', attributes: 'Path=/' } };
  const response = handler(e);
  assert.equal(response.cookies['CloudFront-Policy'].attributes,
    'Path=/signed/outputs/asset-1/hls/; Secure; HttpOnly; SameSite=None; Partitioned');
  assert.deepEqual(response.cookies.other, { value: 'x', attributes: 'Path=/' });
});

for (const missing of ['Policy', 'Signature', 'Key-Pair-Id'] as const) {
  test(`no cookies without ${missing}`, () => {
    const query: Record<string, Entry> = copyOf(SIGNED);
    delete query[missing];
    const response = handler(event('/signed/live/abc/index.m3u8', query));
    assert.deepEqual(response.cookies, {});
  });

  test(`no cookies with an empty ${missing}`, () => {
    const query: Record<string, Entry> = copyOf(SIGNED);
    query[missing] = { value: '' };
    assert.deepEqual(handler(event('/signed/live/abc/index.m3u8', query)).cookies, {});
  });
}

test('no cookies on a request that carried cookies instead of a signed URL', () => {
  const e = event('/signed/live/abc/seg-00001.ts', {});
  e.request.cookies = { 'CloudFront-Policy': { value: SIGNED.Policy.value } };
  assert.deepEqual(handler(e).cookies, {});
});

for (const status of [403, 404, 206, 304]) {
  test(`status ${status}: the response unchanged, no cookies`, () => {
    const e = event('/signed/live/abc/index.m3u8', copyOf(SIGNED), status);
    const before = copyOf(e.response);
    const response = handler(e);
    assert.deepEqual(response, before);
  });
}

test('a directory that would break out of the cookie attribute: no cookies', () => {
  assert.deepEqual(handler(event('/signed/live/a;Domain=evil.example/index.m3u8', copyOf(SIGNED))).cookies, {});
  assert.deepEqual(handler(event('/signed/live/a b/index.m3u8', copyOf(SIGNED))).cookies, {});
});

test('the code is plain script for cloudfront-js-2.0: no module syntax, no require', () => {
  const code = fs.readFileSync(PLAYBACK_COOKIES_JS, 'utf8');
  assert.doesNotMatch(code, /^\s*(import|export)\s/m);
  assert.doesNotMatch(code, /\brequire\s*\(/);
  assert.ok(Buffer.byteLength(code) < 10240, 'CloudFront Functions code is at most 10 KB');
});
