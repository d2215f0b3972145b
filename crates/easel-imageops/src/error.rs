//! The single error type shared by every operation in this crate.

/// What went wrong in an image operation. The `Display` text is written to be
/// shown to end users as-is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpsError {
    /// The bytes are not an image in a supported format, or are corrupt.
    #[error("could not read the image: {0}")]
    Decode(String),
    /// The input (or the requested output) has more pixels than allowed.
    #[error(
        "image is too large: {width}x{height} pixels is more than the limit of {max_pixels} pixels"
    )]
    TooLarge {
        width: u32,
        height: u32,
        max_pixels: u64,
    },
    /// A parameter is out of range or malformed.
    #[error("invalid {field}: {reason}")]
    InvalidParam { field: &'static str, reason: String },
    /// The encoder failed.
    #[error("could not encode the image: {0}")]
    Encode(String),
}

impl OpsError {
    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        OpsError::InvalidParam {
            field,
            reason: reason.into(),
        }
    }
}
