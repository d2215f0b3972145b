//! Signed URLs for asset content: clients that cannot send a header (an `<img>` tag, a
//! webhook receiver) fetch `…/content?expires=<unix>&iat=<unix ms>&sig=<hmac>`. The secret
//! lives in the database so every node signs and checks alike. `iat`, the time of issue, is
//! what revocation binds to: a URL issued before the owner's last key revocation is refused
//! (`users::keys_revoked_at`), so revoking a key also ends the links handed out with it.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

#[derive(Clone)]
pub struct UrlSigner {
    secret: Vec<u8>,
}

impl UrlSigner {
    pub fn new(secret: &str) -> UrlSigner {
        UrlSigner {
            secret: secret.as_bytes().to_vec(),
        }
    }

    fn mac(&self, asset_id: &str, expires: i64, issued_ms: i64) -> String {
        let mut m = Hmac::<Sha256>::new_from_slice(&self.secret).expect("any key length");
        m.update(asset_id.as_bytes());
        m.update(b":");
        m.update(expires.to_string().as_bytes());
        m.update(b":");
        m.update(issued_ms.to_string().as_bytes());
        hex::encode(m.finalize().into_bytes())
    }

    /// Query string (`expires=…&iat=…&sig=…`) granting access to the asset until `expires`
    /// (unix seconds), issued at `issued_ms` (unix ms).
    pub fn query(&self, asset_id: &str, issued_ms: i64, expires: i64) -> String {
        format!(
            "expires={expires}&iat={issued_ms}&sig={}",
            self.mac(asset_id, expires, issued_ms)
        )
    }

    /// True if `sig` is valid for the asset, its expiry and its time of issue, and not
    /// expired at `now` (unix seconds).
    pub fn verify(
        &self,
        asset_id: &str,
        expires: i64,
        issued_ms: i64,
        sig: &str,
        now: i64,
    ) -> bool {
        let mac = self.mac(asset_id, expires, issued_ms);
        expires >= now && bool::from(mac.as_bytes().ct_eq(sig.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_bind_asset_and_expiry() {
        let s = UrlSigner::new("k");
        let q = s.query("ast_1", 7, 100);
        let sig = q.split("sig=").nth(1).unwrap();
        assert!(s.verify("ast_1", 100, 7, sig, 50));
        assert!(!s.verify("ast_1", 100, 7, sig, 101), "expired");
        assert!(!s.verify("ast_2", 100, 7, sig, 50), "other asset");
        assert!(!s.verify("ast_1", 200, 7, sig, 50), "other expiry");
        assert!(!s.verify("ast_1", 100, 8, sig, 50), "other time of issue");
        assert!(
            !UrlSigner::new("j").verify("ast_1", 100, 7, sig, 50),
            "other secret"
        );
    }
}
