//! The `playback` part of the endpoint responses: the playlist URL, and for a signed resource
//! the CloudFront credentials a player needs ([`PlaybackAuthorization`]).

use crate::error::ApiError;
use crate::Deps;
use serde_json::{json, Value};
use streamstack_core::playback::PlaybackAuthorization;
use streamstack_core::{Playback, ValidationError};
use time::OffsetDateTime;

/// `{"mode", "playlist_url", "signed_playlist_url", "authorization"}` of a resource stored under
/// `prefix` (no trailing slash) with its playlist at `playlist_key`:
/// - `mode`: `public` or `signed`;
/// - `playlist_url`: the playlist's playback URL (CloudFront), `null` without a playback base;
/// - `signed_playlist_url`: for `signed`, the playlist URL with the signed query
///   (`Policy`, `Signature`, `Key-Pair-Id`), for players that cannot be given cookies;
/// - `authorization`: for `signed`, [`PlaybackAuthorization`]: the cookies scoped to
///   `<base>/<prefix>/*`, valid for `PLAYBACK_TTL_SECS` from now.
///
/// Signed fields are `null` when the resource is public or the stack has no signing key.
pub(crate) fn body(deps: &Deps, mode: Playback, prefix: &str, playlist_key: &str) -> Value {
    let playlist_url = deps.config.media_url(playlist_key);
    let authorization = match (mode, &deps.signer, deps.config.media_base_url()) {
        (Playback::Signed, Some(signer), Some(base)) => {
            let now = OffsetDateTime::now_utc().unix_timestamp().max(0) as u64;
            Some(PlaybackAuthorization::issue(signer, &base, prefix, now, deps.playback.ttl_secs))
        }
        _ => None,
    };
    let signed_playlist_url = match (&authorization, &playlist_url) {
        (Some(auth), Some(url)) => Some(auth.signed_url(url)),
        _ => None,
    };
    json!({
        "mode": mode,
        "playlist_url": playlist_url,
        "signed_playlist_url": signed_playlist_url,
        "authorization": authorization,
    })
}

/// The playback of a resource being created: `requested`, else the stack's default.
///
/// # Errors
/// 400 on `playback` when it would be signed and the stack has no signing key.
pub(crate) fn for_new(deps: &Deps, requested: Option<Playback>) -> Result<Playback, ApiError> {
    let mode = requested.unwrap_or(deps.playback.default);
    if mode == Playback::Signed && deps.signer.is_none() {
        return Err(ValidationError::new(
            "playback",
            "signed playback is not configured on this stack (PlaybackPublicKey and \
             PlaybackPrivateKeySecretArn)",
        )
        .into());
    }
    Ok(mode)
}
