//! What every domain error says about itself: a [`ErrorKind`] and a stable
//! machine `code`. The kind decides the HTTP status (one mapping,
//! [`ErrorKind::status`]; the HTTP layer adds the few protocol answers that
//! are more precise, such as `416`) and the log level (one rule: a failure
//! of ours, `5xx`, is logged at warn with the internal error; a refusal at
//! info). The code is what clients switch on and what `download.denied`
//! records.

/// The kinds of failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A rule refused it: the signature, the entitlement, the address.
    Denied,
    /// Over a quota or a request rate; waiting may help.
    LimitReached,
    /// No such thing (or no longer).
    NotFound,
    /// It contradicts the current state: a published file, a pending upload,
    /// a validator that no longer holds.
    Conflict,
    /// The request itself is malformed or out of range.
    Invalid,
    /// A backing service (the state store, blob storage) cannot be reached or
    /// did not answer in time; retrying may help.
    Unavailable,
    /// A backing service answered with something unusable.
    Upstream,
    /// A bug, a corrupt record, a missing secret.
    Internal,
}

impl ErrorKind {
    /// The HTTP status this kind is answered with.
    pub fn status(self) -> u16 {
        match self {
            ErrorKind::Denied => 403,
            ErrorKind::LimitReached => 429,
            ErrorKind::NotFound => 404,
            ErrorKind::Conflict => 409,
            ErrorKind::Invalid => 400,
            ErrorKind::Unavailable => 503,
            ErrorKind::Upstream => 502,
            ErrorKind::Internal => 500,
        }
    }

    /// A refusal on the rules' or the quota's grounds (as opposed to a
    /// malformed request, an unknown name or a failure).
    pub fn is_refusal(self) -> bool {
        matches!(self, ErrorKind::Denied | ErrorKind::LimitReached)
    }
}

/// A domain error's classification.
pub trait Classified: std::error::Error {
    fn kind(&self) -> ErrorKind;

    /// The stable machine code, e.g. `not_entitled`, `quota_exceeded`.
    fn code(&self) -> &'static str;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_of_ours_are_5xx_and_refusals_are_not() {
        let all = [
            ErrorKind::Denied,
            ErrorKind::LimitReached,
            ErrorKind::NotFound,
            ErrorKind::Conflict,
            ErrorKind::Invalid,
            ErrorKind::Unavailable,
            ErrorKind::Upstream,
            ErrorKind::Internal,
        ];
        for kind in all {
            let ours = matches!(kind, ErrorKind::Unavailable | ErrorKind::Upstream | ErrorKind::Internal);
            assert_eq!(kind.status() >= 500, ours, "{kind:?}");
            assert!(!(kind.is_refusal() && ours), "{kind:?}");
        }
    }
}
