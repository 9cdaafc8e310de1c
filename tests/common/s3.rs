//! An in-process S3-compatible server (s3s-fs over HTTP) on a free port: for
//! the tests (through `common`) and the upload load test (by path).
#![allow(clippy::unwrap_used, reason = "test harness: a failure to start is a failed run")]

use std::sync::{Arc, Mutex};

use hyper_util::rt::{TokioExecutor, TokioIo};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::task::AbortHandle;

pub const S3_ACCESS_KEY: &str = "tollgate-test";
pub const S3_SECRET_KEY: &str = "tollgate-test-secret";
pub const BUCKET: &str = "releases";

/// An in-process S3-compatible server (s3s-fs) on a free port.
#[allow(dead_code, reason = "the load test does not look into the root")]
pub struct S3Server {
    pub endpoint: String,
    pub root: TempDir,
    tasks: Arc<Mutex<Vec<AbortHandle>>>,
}

impl S3Server {
    pub async fn start() -> Self {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join(BUCKET)).unwrap();
        let fs = s3s_fs::FileSystem::new(root.path()).unwrap();
        let mut builder = s3s::service::S3ServiceBuilder::new(fs);
        builder.set_auth(s3s::auth::SimpleAuth::from_single(S3_ACCESS_KEY, S3_SECRET_KEY));
        let service = builder.build();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let tasks: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let conn_tasks = tasks.clone();
        let accept = tokio::spawn(async move {
            let http = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            loop {
                let Ok((tcp, _)) = listener.accept().await else { break };
                let service = service.clone();
                let http = http.clone();
                let task = tokio::spawn(async move {
                    let _ = http.serve_connection(TokioIo::new(tcp), service).await;
                });
                conn_tasks.lock().unwrap().push(task.abort_handle());
            }
        });
        tasks.lock().unwrap().push(accept.abort_handle());
        Self { endpoint: format!("http://{addr}"), root, tasks }
    }

    /// Stop listening and cut every open connection, as a crashed server would.
    pub fn kill(&self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.kill();
    }
}
