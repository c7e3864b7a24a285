//! OpenAPI schemas of values the API serializes by hand (feature `openapi`): the types here
//! only describe JSON that another type writes, for the channel API's document.

use utoipa::ToSchema;

/// What a pulling streamer last observed of a device's source: the `stream` field of a
/// device (written by `Device`'s serializer from a `stream_state::StreamState`).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct StreamStateView {
    /// `receiving`, `reconnecting` or `stopped`.
    #[schema(pattern = "^(receiving|reconnecting|stopped)$")]
    status: String,
    /// The last connection error, credentials removed.
    last_error: Option<String>,
    /// Bytes received from the source since the streamer started pulling it.
    bytes_in: u64,
    /// When this was observed (RFC 3339).
    #[schema(format = DateTime)]
    updated_at: Option<String>,
}
