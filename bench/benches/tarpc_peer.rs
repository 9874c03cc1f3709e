//! The peer anchor: the same `add` as a tarpc service (bincode over a length-delimited unix
//! socket), served by a child process (this benchmark binary, started again in server mode),
//! as our own process is.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tarpc::server::{BaseChannel, Channel};
use tarpc::tokio_serde::formats::Bincode;
use tarpc::tokio_util::codec::LengthDelimitedCodec;
use tokio::runtime::Runtime;

/// Set in the child: the socket to serve on.
const SOCKET_ENV: &str = "PM_BENCH_TARPC_SOCKET";

#[tarpc::service]
pub(crate) trait Calc {
    /// Adds two numbers.
    async fn add(a: i64, b: i64) -> i64;
}

#[derive(Clone)]
struct Server;

impl Calc for Server {
    async fn add(self, _: tarpc::context::Context, a: i64, b: i64) -> i64 {
        a + b
    }
}

/// In the child: serves one connection on the socket `SOCKET_ENV` names and returns `true`;
/// `false` in the benchmark itself.
pub(crate) fn serve_if_asked() -> bool {
    let Some(path) = std::env::var_os(SOCKET_ENV) else {
        return false;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let listener = tokio::net::UnixListener::bind(&path).expect("bind");
        let (conn, _) = listener.accept().await.expect("accept");
        let framed = LengthDelimitedCodec::builder().new_framed(conn);
        let transport = tarpc::serde_transport::new(framed, Bincode::default());
        BaseChannel::with_defaults(transport)
            .execute(Server.serve())
            .for_each(|call| async {
                tokio::spawn(call);
            })
            .await;
    });
    true
}

/// A tarpc server child and a client of it.
pub(crate) struct Peer {
    child: Child,
    dir: PathBuf,
    client: CalcClient,
}

impl Peer {
    /// Starts the child and connects (on `rt`, whose tasks drive the client).
    pub(crate) fn start(rt: &Runtime) -> Self {
        let dir = std::env::temp_dir().join(format!("pm-bench-tarpc-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let path = dir.join("calc.sock");
        let child = Command::new(std::env::current_exe().expect("this binary"))
            .env(SOCKET_ENV, &path)
            .stdin(Stdio::null())
            .spawn()
            .expect("the tarpc server starts");
        // Ends the child and the directory if connecting fails.
        let mut guard = ChildGuard(Some((child, dir)));
        let client = rt.block_on(async {
            let deadline = Instant::now() + Duration::from_secs(10);
            let conn = loop {
                match tokio::net::UnixStream::connect(&path).await {
                    Ok(conn) => break conn,
                    Err(err) if Instant::now() > deadline => panic!("tarpc server: {err}"),
                    Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                }
            };
            let framed = LengthDelimitedCodec::builder().new_framed(conn);
            let transport = tarpc::serde_transport::new(framed, Bincode::default());
            CalcClient::new(tarpc::client::Config::default(), transport).spawn()
        });
        let (child, dir) = guard.0.take().expect("still held");
        Self { child, dir, client }
    }

    /// `iters` sequential calls.
    pub(crate) async fn sequential(&self, iters: u64) -> Duration {
        let start = Instant::now();
        for i in 0..iters as i64 {
            let sum = self
                .client
                .add(tarpc::context::current(), i, 1)
                .await
                .expect("add");
            assert_eq!(sum, i + 1);
        }
        start.elapsed()
    }

    /// `iters` calls, `width` in flight at once.
    pub(crate) async fn in_flight(&self, iters: u64, width: u64) -> Duration {
        // Exactly `iters` calls: the first `iters % width` workers make one more.
        let start = Instant::now();
        let workers: Vec<_> = (0..width)
            .map(|w| async move {
                let calls = iters / width + u64::from(w < iters % width);
                for i in 0..calls as i64 {
                    let sum = self
                        .client
                        .add(tarpc::context::current(), i, 1)
                        .await
                        .expect("add");
                    assert_eq!(sum, i + 1);
                }
            })
            .collect();
        futures_util::future::join_all(workers).await;
        start.elapsed()
    }
}

/// Kills the server child and removes its directory unless taken.
struct ChildGuard(Option<(Child, PathBuf)>);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some((mut child, dir)) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
