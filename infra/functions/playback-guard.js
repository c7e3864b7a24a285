// CloudFront Function (runtime cloudfront-js-2.0), viewer request of the DEFAULT cache
// behaviour (public playback: live/, devices/, outputs/, no signatures). CloudFront picks a
// behaviour on the URI as sent, where %2F is not a slash, and S3 decodes it: without this,
// /signed%2Flive/<id>/index.m3u8 would match the default behaviour and read
// signed/live/<id>/index.m3u8 unsigned (the bucket policy cannot tell behaviours apart).
// So nothing under signed/ is ever answered here: 403 for an encoded slash or backslash
// (%2F, %5C, any case) or a raw backslash, for a malformed escape, and for a path that,
// once decoded (and with dot segments and empty segments resolved), is /signed or starts
// with /signed/. Anything else passes unchanged.
// This file is the source; template.yaml carries it inline (PlaybackGuardFunction's
// FunctionCode) and `make iac-check` fails when the two differ.
function forbidden() {
  return {
    statusCode: 403,
    statusDescription: 'Forbidden',
    headers: { 'cache-control': { value: 'no-store' } }
  };
}

// The path's segments with '.', '..' and empty ones resolved, joined again: /a//b/../c -> /a/c.
function resolved(path) {
  var out = [];
  var parts = path.split('/');
  for (var i = 0; i < parts.length; i++) {
    var part = parts[i];
    if (part === '' || part === '.') {
      continue;
    }
    if (part === '..') {
      out.pop();
    } else {
      out.push(part);
    }
  }
  return '/' + out.join('/');
}

function isSigned(path) {
  return path === '/signed' || path.indexOf('/signed/') === 0;
}

function handler(event) {
  var request = event.request;
  var uri = request.uri;
  if (typeof uri !== 'string' || /%(2f|5c)/i.test(uri) || uri.indexOf('\\') !== -1) {
    return forbidden();
  }
  var path;
  try {
    path = decodeURIComponent(uri);
  } catch (e) {
    return forbidden();
  }
  if (path.indexOf('\\') !== -1 || isSigned(path) || isSigned(resolved(path))) {
    return forbidden();
  }
  return request;
}
