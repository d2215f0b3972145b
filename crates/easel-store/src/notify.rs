//! Cross-process notices over PostgreSQL `LISTEN`/`NOTIFY`: a process that changes
//! something others act on (a job queued, a cancel, a key revoked) says so on a channel, and
//! listeners in other processes wake at once instead of at their next timer tick. Notices
//! only wake: the database stays the truth, and every listener keeps its timer, so a notice
//! lost (a dropped connection, SQLite) delays work but loses nothing.

use easel_core::{Error, Result};
use sqlx::postgres::PgListener;

/// A job was queued or requeued, a cancel was asked for, or a job changed state. Payloads:
/// `queued:<resource>:<job id>` (`any` when the resource is not known), `cancel:<job id>`,
/// `changed:<job id>`. `jobs::insert` sends `queued` in its transaction; the queue sends the
/// rest.
pub const JOBS: &str = "easel_jobs";
/// A key was revoked: drop cached keys. Payload: the key id.
pub const AUTH: &str = "easel_auth";

/// A PostgreSQL connection listening on some channels. It reconnects by itself after a
/// dropped connection (notices sent meanwhile are lost; the timers cover them).
pub struct Listener(PgListener);

/// One notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub channel: String,
    pub payload: String,
}

impl Listener {
    pub(crate) async fn connect(url: &str, channels: &[&str]) -> Result<Listener> {
        let mut l = PgListener::connect(url)
            .await
            .map_err(|e| Error::unavailable(format!("cannot listen for notices: {e}")))?;
        l.listen_all(channels.iter().copied())
            .await
            .map_err(|e| Error::unavailable(format!("cannot listen for notices: {e}")))?;
        Ok(Listener(l))
    }

    /// The next notice.
    pub async fn recv(&mut self) -> Result<Notification> {
        let n = self.0.recv().await.map_err(crate::db::db_err)?;
        Ok(Notification {
            channel: n.channel().to_string(),
            payload: n.payload().to_string(),
        })
    }
}
