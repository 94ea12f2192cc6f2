//! Broker -> device for the gate: passes the broker's packets through as they stream
//! (a large PUBLISH is not buffered whole), merges the gate's failure codes into the
//! SUBACK of a SUBSCRIBE it forwarded in part (`mqtt_acl`), and writes the answers the
//! gate gives itself (SUBACK, PUBACK, PUBREC) between the broker's packets, never inside
//! one.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::BytesMut;
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::mqtt_acl::suback;
use super::mqtt_packets::{frame_len, read_u16, GateError};

/// SUBSCRIBEs forwarded in part: packet id -> the codes to merge (see `Verdict::Partial`).
pub(super) type Pending = Arc<Mutex<HashMap<u16, Vec<Option<u8>>>>>;

/// Longest SUBACK the gate rewrites (one code per filter); a longer one passes unchanged.
const MAX_SUBACK: usize = 64 * 1024;

pub(super) async fn pump_down<R, W>(
    up: &mut R,
    down: &mut W,
    mut answers: mpsc::Receiver<Vec<u8>>,
    pending: Pending,
    v5: bool,
) -> Result<(), GateError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = BytesMut::with_capacity(8 * 1024);
    // Bytes of the current broker packet still to pass through.
    let mut passing = 0usize;
    let mut answers_open = true;
    loop {
        // Pass on what is known to belong to the current packet, then look at the next.
        loop {
            if passing > 0 && !buf.is_empty() {
                let n = passing.min(buf.len());
                down.write_all(&buf.split_to(n)).await?;
                passing -= n;
                continue;
            }
            if passing > 0 {
                break;
            }
            let Some((h, rl)) = frame_len(&buf)? else {
                break;
            };
            let total = h + rl;
            let rewrite = buf[0] == 0x90 && total <= MAX_SUBACK && !pending.lock().is_empty();
            if !rewrite {
                passing = total;
                continue;
            }
            if buf.len() < total {
                break; // the whole SUBACK first
            }
            let frame = buf.split_to(total);
            down.write_all(&merge(&frame, h, &pending, v5)?).await?;
        }
        let at_boundary = passing == 0 && buf.is_empty();
        tokio::select! {
            r = up.read_buf(&mut buf) => {
                if r? == 0 {
                    let _ = down.shutdown().await;
                    return Ok(());
                }
            }
            a = answers.recv(), if at_boundary && answers_open => match a {
                Some(packet) => down.write_all(&packet).await?,
                None => answers_open = false,
            },
        }
    }
}

/// The broker's SUBACK with the gate's codes merged in, when it answers a SUBSCRIBE the
/// gate forwarded in part; otherwise unchanged.
fn merge(frame: &[u8], h: usize, pending: &Pending, v5: bool) -> Result<Vec<u8>, GateError> {
    let pkid = read_u16(frame, h)?;
    let Some(codes) = pending.lock().remove(&pkid) else {
        return Ok(frame.to_vec());
    };
    let mut at = h + 2;
    if v5 {
        let (vh, plen) = frame_len(frame.get(at - 1..).ok_or(GateError::Malformed)?)?
            .ok_or(GateError::Malformed)?;
        at += vh - 1 + plen;
    }
    let props = frame.get(h + 2..at).ok_or(GateError::Malformed)?;
    let mut broker = frame.get(at..).ok_or(GateError::Malformed)?.iter();
    // The broker answered the forwarded filters in order; one it did not answer fails.
    let merged: Vec<u8> = codes
        .into_iter()
        .map(|c| c.unwrap_or_else(|| broker.next().copied().unwrap_or(0x80)))
        .collect();
    Ok(suback(pkid, props, &merged, v5))
}
