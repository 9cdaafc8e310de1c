//! A TCP proxy in front of a real server that can be frozen: while frozen it
//! keeps every connection open and accepts new ones, but moves no byte either
//! way — what a client sees of a server stopped with `SIGSTOP`.
#![allow(clippy::unwrap_used, reason = "test harness: a failure to start is a failed run")]

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

pub struct StallProxy {
    pub addr: SocketAddr,
    frozen: watch::Sender<bool>,
    tasks: std::sync::Arc<std::sync::Mutex<JoinSet<()>>>,
}

impl StallProxy {
    /// Forward every connection made to `addr` to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (frozen, watch) = watch::channel(false);
        let tasks = std::sync::Arc::new(std::sync::Mutex::new(JoinSet::new()));
        let spawner = tasks.clone();
        tasks.lock().unwrap().spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let watch = watch.clone();
                spawner.lock().unwrap().spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else { return };
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::join!(pump(cr, sw, watch.clone()), pump(sr, cw, watch));
                });
            }
        });
        Self { addr, frozen, tasks }
    }

    /// `http://<addr>`, for a client's endpoint.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stop moving bytes (connections stay open).
    pub fn freeze(&self) {
        self.frozen.send_replace(true);
    }

    /// Move bytes again, what was held first.
    pub fn thaw(&self) {
        self.frozen.send_replace(false);
    }
}

impl Drop for StallProxy {
    fn drop(&mut self) {
        self.tasks.lock().unwrap().abort_all();
    }
}

/// Copy `from` to `to`, holding each chunk while frozen.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut frozen: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if frozen.wait_for(|f| !f).await.is_err() {
            return;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = to.shutdown().await;
                return;
            }
            Ok(n) => n,
        };
        if frozen.wait_for(|f| !f).await.is_err() || to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
