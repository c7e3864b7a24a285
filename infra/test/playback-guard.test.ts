// The default behaviour's viewer-request function (infra/functions/playback-guard.js, runtime
// cloudfront-js-2.0), run in a plain V8 context with CloudFront Functions event objects:
// public playback passes unchanged; anything that S3 would read under signed/ (plain,
// percent-encoded, with an encoded slash or backslash, a malformed escape) is a 403.
//   cd infra && npm test
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import { test } from 'node:test';
import * as vm from 'node:vm';
import { PLAYBACK_GUARD_JS } from '../lib/playback';

type Entry = { value: string };
type Request = { method: string; uri: string; querystring: Record<string, Entry>; headers: Record<string, Entry>;
  cookies: Record<string, Entry> };
type Response = { statusCode: number; statusDescription?: string; headers?: Record<string, Entry> };

function loadHandler(): (event: unknown) => Request | Response {
  const context = vm.createContext({});
  vm.runInContext(fs.readFileSync(PLAYBACK_GUARD_JS, 'utf8'), context, { filename: PLAYBACK_GUARD_JS });
  assert.equal(typeof context.handler, 'function');
  return context.handler;
}

const runInContext = loadHandler();

function request(uri: string): Request {
  return {
    method: 'GET',
    uri,
    querystring: { v: { value: '1' } },
    headers: { host: { value: 'd111111abcdef8.cloudfront.net' }, origin: { value: 'https://player.example.com' } },
    cookies: {},
  };
}

/** The handler's result for `uri` as a plain object of this realm. */
function run(uri: string): Request | Response {
  const event = {
    version: '1.0',
    context: { distributionDomainName: 'd111111abcdef8.cloudfront.net', distributionId: 'EDFDVBD6EXAMPLE',
      eventType: 'viewer-request', requestId: 'r-1' },
    viewer: { ip: '198.51.100.11' },
    request: request(uri),
  };
  return JSON.parse(JSON.stringify(runInContext(event)));
}

function assertRefused(uri: string): void {
  const out = run(uri) as Response;
  assert.equal(out.statusCode, 403, `${uri} must be refused, got ${JSON.stringify(out)}`);
  assert.equal(out.statusDescription, 'Forbidden');
  assert.equal((out as unknown as Request).uri, undefined, 'a response, not the request');
}

const PUBLIC = [
  '/live/abc/index.m3u8',
  '/live/abc/seg-00001.ts',
  '/devices/cam-1/live/index.m3u8',
  '/devices/cam-1/archive/2026/11/24/seg-00042.ts',
  '/outputs/asset-1/hls/master.m3u8',
  '/outputs/asset-1/mp4/asset-1.mp4',
  '/outputs/asset-1/thumbnails/thumb.0000001.jpg',
  '/live/my%20channel/index.m3u8',
  '/live/signed/index.m3u8',
  '/live/abc/signed-seg.ts',
  '/signedx/live/a/x.ts',
  '/SIGNED/live/a/x.ts',
  '/',
];

for (const uri of PUBLIC) {
  test(`public ${uri}: the request passes unchanged`, () => {
    assert.deepEqual(run(uri), request(uri));
  });
}

const REFUSED: [string, string][] = [
  ['/signed/live/a/x.ts', 'the signed/ prefix itself'],
  ['/signed/live/a/index.m3u8', 'a signed playlist'],
  ['/signed/outputs/asset-1/hls/master.m3u8', 'a signed asset'],
  ['/signed/devices/cam-1/live/index.m3u8', 'a signed device'],
  ['/signed', 'the prefix without a slash'],
  ['/signed/', 'the prefix directory'],
  ['/signed%2Flive/a/x.ts', 'encoded slash, upper case'],
  ['/signed%2flive/a/x.ts', 'encoded slash, lower case'],
  ['/SIGNED%2Flive/a/x.ts', 'encoded slash anywhere, whatever the rest'],
  ['/live%2F..%2Fsigned/live/a/x.ts', 'encoded slashes and a dot segment'],
  ['/live/a%2fb.ts', 'an encoded slash in a public path too'],
  ['/signed%5Clive/a/x.ts', 'encoded backslash, upper case'],
  ['/live/a%5cb.ts', 'encoded backslash, lower case'],
  ['/signed\\live/a/x.ts', 'a raw backslash'],
  ['/%73igned/live/a/x', 'a percent-encoded letter'],
  ['/%73%69%67%6E%65%64/live/a/x', 'every letter encoded'],
  ['/sign%65d/live/a/x.ts', 'an encoded letter inside'],
  ['/signed%2Dx/../signed/live/a/x', 'decoded, then resolved'],
  ['/live/../signed/live/a/x.ts', 'a dot segment into signed/'],
  ['//signed/live/a/x.ts', 'an empty segment before signed/'],
  ['/./signed/live/a/x.ts', 'a dot segment before signed/'],
  ['/signed/../live/a/x.ts', 'under signed/ before resolution (S3 does not resolve)'],
  ['/live/%E0%A4%A/x.ts', 'a malformed escape'],
  ['/live/%/x.ts', 'a lone percent sign'],
  ['/live/%C0%AF/x.ts', 'an overlong UTF-8 slash'],
  ['/live/%ZZ/x.ts', 'a non-hex escape'],
];

for (const [uri, why] of REFUSED) {
  test(`refused ${uri} (${why}): 403`, () => assertRefused(uri));
}

test('the code is plain script for cloudfront-js-2.0: no module syntax, no require, under 10 KB', () => {
  const code = fs.readFileSync(PLAYBACK_GUARD_JS, 'utf8');
  assert.doesNotMatch(code, /^\s*(import|export)\s/m);
  assert.doesNotMatch(code, /\brequire\s*\(/);
  assert.ok(Buffer.byteLength(code) < 10240, 'CloudFront Functions code is at most 10 KB');
});
