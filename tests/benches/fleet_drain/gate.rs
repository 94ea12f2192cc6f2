//! A depot's link to the cloud as the storm bench needs it: a TCP relay that, while
//! shut, holds every new connection (accepted, not yet passed on) and passes them all on
//! at once when opened, so K running depots reach the cloud in the same instant.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct Gate {
    pub addr: std::net::SocketAddr,
    open: tokio::sync::watch::Sender<bool>,
    held: Arc<AtomicUsize>,
    relay: tokio::task::JoinHandle<()>,
}

impl Gate {
    /// An open gate in front of `upstream`.
    pub async fn new(upstream: std::net::SocketAddr) -> Gate {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (open, state) = tokio::sync::watch::channel(true);
        let held = Arc::new(AtomicUsize::new(0));
        let counter = held.clone();
        let relay = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut state = state.clone();
                let counter = counter.clone();
                tokio::spawn(async move {
                    let shut = !*state.borrow();
                    if shut {
                        counter.fetch_add(1, Ordering::SeqCst);
                    }
                    if state.wait_for(|o| *o).await.is_err() {
                        return;
                    }
                    let Ok(mut out) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = (inbound.set_nodelay(true), out.set_nodelay(true));
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                });
            }
        });
        Gate {
            addr,
            open,
            held,
            relay,
        }
    }

    /// New connections wait from now on.
    pub fn shut(&self) {
        self.open.send_replace(false);
    }

    /// Every held connection goes through, and new ones pass at once.
    pub fn open(&self) {
        self.open.send_replace(true);
    }

    /// Connections held while shut so far.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::SeqCst)
    }

    /// Waits until `n` connections are held (one per depot's first push).
    pub async fn wait_held(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.held.load(Ordering::SeqCst) < n {
            assert!(
                Instant::now() < deadline,
                "only {} of {n} depots reached the gate",
                self.held.load(Ordering::SeqCst)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.relay.abort();
    }
}
