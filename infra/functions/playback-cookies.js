// CloudFront Function (runtime cloudfront-js-2.0), viewer response of the signed/* cache
// behaviour. That behaviour trusts the stack's key group, so CloudFront has verified the
// signed URL (or the signed cookies) before this runs. A request that came with a signed
// URL (Policy, Signature and Key-Pair-Id in its query string) and got a 200 gets the same
// three values back as signed cookies, scoped to the request's directory: a player that
// opened the signed playlist URL then fetches the playlist's relative segment URLs with
// the cookies. Partitioned (CHIPS): a player on another site gets them in that site's
// partition, where browsers that block third-party cookies still keep them. Anything else
// is returned unchanged.
// This file is the source; template.yaml carries it inline (PlaybackCookieFunction's
// FunctionCode) and `make iac-check` fails when the two differ.
var COOKIES = {
  'Policy': 'CloudFront-Policy',
  'Signature': 'CloudFront-Signature',
  'Key-Pair-Id': 'CloudFront-Key-Pair-Id'
};

function handler(event) {
  var request = event.request;
  var response = event.response;
  if (response.statusCode !== 200) {
    return response;
  }
  var query = request.querystring || {};
  var values = {};
  for (var name in COOKIES) {
    var entry = query[name];
    if (!entry || !entry.value) {
      return response;
    }
    values[name] = entry.value;
  }
  // The request's directory with its trailing slash: /signed/live/abc/index.m3u8 ->
  // /signed/live/abc/. A path that would break out of the cookie attribute is left alone.
  var uri = request.uri;
  var path = uri.substring(0, uri.lastIndexOf('/') + 1);
  if (path.charAt(0) !== '/' || /[;,\s]/.test(path)) {
    return response;
  }
  var attributes = 'Path=' + path + '; Secure; HttpOnly; SameSite=None; Partitioned';
  var cookies = response.cookies || {};
  for (var param in COOKIES) {
    cookies[COOKIES[param]] = { value: values[param], attributes: attributes };
  }
  response.cookies = cookies;
  return response;
}
